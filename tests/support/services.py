"""The real PostgreSQL and Redis the suite runs on: a fresh database and a fresh Redis key prefix
per test, a migrated stack for service processes, and queries of what was stored.

Within a pytest session (`shared_databases`, entered by tests/conftest.py) a migrated database is
a copy of a template migrated once, and databases are dropped on a thread of their own: a DROP
DATABASE waits for a checkpoint (0.1-0.9 s on a busy machine) that the next test need not wait
for, and the migrations take 0.4-0.9 s where a copy's no-op upgrade takes under 0.1 s. Outside one
(the benchmarks) each database is migrated and dropped in line.

A service that is down fails the test, never skips it: the suite is meant to prove the real thing.
"""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import threading
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


def _drop(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class SharedDatabases:
    """What one pytest session's databases share: the template a migrated one is copied from,
    made on first use, and the thread that drops them. `close` waits for every drop and raises
    the first that failed."""

    def __init__(self) -> None:
        self._drops: queue.Queue[str | None] = queue.Queue()
        self._failure: BaseException | None = None
        self._template: str | None = None
        self._templates: list[str] = []  # made, migrated or not: dropped by close()
        # A daemon, so that a session that dies before close() does not hang at exit.
        self._dropper = threading.Thread(target=self._drop_each, name="drop-db", daemon=True)
        self._dropper.start()

    def template(self) -> str:
        """The name of a database at the migrations' head, that nothing stays connected to."""
        if self._template is None:
            name = f"aitasks_template_{secrets.token_hex(6)}"
            _admin(f'CREATE DATABASE "{name}"')
            self._templates.append(name)
            run_async(_upgrade(_database_url(name)))
            self._template = name
        return self._template

    def drop_later(self, name: str) -> None:
        self._drops.put(name)

    def _drop_each(self) -> None:
        while (name := self._drops.get()) is not None:
            try:
                _drop(name)
            except BaseException as exc:  # raised again by close()
                self._failure = self._failure or exc

    def close(self) -> None:
        self._drops.put(None)
        self._dropper.join()
        for name in self._templates:
            _drop(name)
        if self._failure is not None:
            raise self._failure


_shared: SharedDatabases | None = None


@contextmanager
def shared_databases() -> Iterator[SharedDatabases]:
    """The session's template and dropper, for `fresh_postgres_database` to use meanwhile."""
    global _shared
    _shared = SharedDatabases()
    try:
        yield _shared
    finally:
        shared, _shared = _shared, None
        shared.close()


@contextmanager
def fresh_postgres_database(*, migrated: bool = False) -> Iterator[str]:
    """Create a database, empty or (`migrated`) at the migrations' head; yield its plain
    `postgresql://` URL; drop it afterwards."""
    name = f"aitasks_test_{secrets.token_hex(6)}"
    shared = _shared
    template = ""
    try:
        if migrated and shared is not None:
            template = f' TEMPLATE "{shared.template()}"'
        _admin(f'CREATE DATABASE "{name}"{template}')
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not usable at {PG_ADMIN_URL}: {exc}")
    try:
        if migrated and not template:
            run_async(_upgrade(_database_url(name)))
        yield _database_url(name)
    finally:
        if shared is not None:
            shared.drop_later(name)
        else:
            _drop(name)


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
    with fresh_postgres_database(migrated=True) as database_url, fresh_redis_prefix() as prefix:
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
