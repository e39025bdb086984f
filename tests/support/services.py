"""The real PostgreSQL and Redis the suite runs on: a fresh database and a fresh Redis key prefix
per test, a migrated stack for service processes, and queries of what was stored.

A service that is down fails the test, never skips it: the suite is meant to prove the real thing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from aitasks.config import async_database_url
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from tests.support.processes import service_env

PG_ADMIN_URL = os.environ.get(
    "AITASKS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("AITASKS_TEST_REDIS", "redis://127.0.0.1:6379/0")

T = TypeVar("T")


def _database_url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _admin(sql: str) -> None:
    """Run one statement as the PostgreSQL admin, from sync code, whatever loop is running."""

    async def run() -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    run_async(run())


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create an empty database; yield its plain `postgresql://` URL; drop it afterwards."""
    name = f"aitasks_test_{secrets.token_hex(6)}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not usable at {PG_ADMIN_URL}: {exc}")
    try:
        yield _database_url(name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_redis_prefix() -> str:
    """A key prefix nobody else uses."""
    return f"aitasks-test-{secrets.token_hex(6)}"


@contextmanager
def fresh_redis_prefix() -> Iterator[str]:
    """A key prefix of its own on the real Redis; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    prefix = new_redis_prefix()
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@contextmanager
def upgraded_stack(folder: Path, **settings: str) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database (schema made) and Redis prefix: yields the environment of
    service processes on them, with `settings`; what a distributed test starts its processes in."""
    with fresh_postgres_database() as database_url, fresh_redis_prefix() as prefix:
        yield migrated_env(folder, database_url, REDIS_URL, prefix, **settings)


def migrated_env(
    folder: Path, database_url: str, redis_url: str, redis_prefix: str, **settings: str
) -> dict[str, str]:
    """The environment of service processes on this database (its schema made here, as `aitasks
    db upgrade` makes it) and Redis prefix, with `settings`; files under `folder`."""
    env = service_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        AITASKS_REDIS_PREFIX=redis_prefix,
        AITASKS_DATA_DIR=str(folder / "data"),
        **settings,
    )
    # In this process: a CLI run would start an interpreter and import the service for this
    # alone (2-5 s a test on a busy machine); the CLI's upgrade has tests of its own
    # (test_database_creation, test_distributed).
    run_async(_upgrade(database_url))
    return env


async def _upgrade(database_url: str) -> None:
    db = Database(async_database_url(database_url))
    try:
        await upgrade(db)
    finally:
        await db.dispose()


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from sync code, on a loop of its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    db = Database(async_database_url(database_url))
    try:
        async with db.engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]
    finally:
        await db.dispose()


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one SQL query against the service's database, for checking what was stored."""
    return run_async(_query(database_url, sql))


def row_counts(database_url: str) -> dict[str, int]:
    """How many rows each table holds: proof that a refused request wrote nothing."""
    tables = ("conversations", "tasks", "messages", "files")
    union = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)
    return {name: int(count) for name, count in query(database_url, union)}
