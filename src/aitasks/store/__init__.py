"""Durable state: tables, sessions, queries and migrations."""
