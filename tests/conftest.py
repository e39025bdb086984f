"""Fixtures for real services: a fresh PostgreSQL database and a fresh Redis key prefix per test.

A service that is down fails the test, never skips it: the suite is meant to prove the real thing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.helpers import PROVIDER_VARIABLES, run_cli, service_env

PG_ADMIN_URL = os.environ.get(
    "AITASKS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("AITASKS_TEST_REDIS", "redis://127.0.0.1:6379/0")


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

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


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


@contextmanager
def fresh_redis_prefix() -> Iterator[str]:
    """A key prefix of its own on the real Redis; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    prefix = f"aitasks-test-{secrets.token_hex(6)}"
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
    """The environment of service processes on this database (its schema made by `aitasks db
    upgrade`) and Redis prefix, with `settings`; files under `folder`."""
    env = service_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        AITASKS_REDIS_PREFIX=redis_prefix,
        AITASKS_DATA_DIR=str(folder / "data"),
        **settings,
    )
    upgraded = run_cli(["db", "upgrade"], env, folder)
    assert upgraded.returncode == 0, upgraded.stderr
    return env


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix for this test alone."""
    with fresh_redis_prefix() as prefix:
        yield prefix


@pytest.fixture(autouse=True)
def no_real_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real provider, whatever keys the developer's shell holds."""
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
