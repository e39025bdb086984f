"""Webhooks: a task's events POSTed to the client's `callback_url`, signed the Standard Webhooks
way, retried with backoff, and recorded."""
