"""On PostgreSQL a task's lone read (every poll) takes a connection from asyncpg's own pool
(`driver.ReadPool`), not from SQLAlchemy's: it reads exactly the task SQLAlchemy reads, an outage
still surfaces as `DatabaseUnavailable`, and `dispose` closes the pool."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from aitasks.config import async_database_url
from aitasks.errors import DatabaseUnavailable, TaskNotFound
from aitasks.store import driver
from aitasks.store import tasks as store
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from aitasks.store.models import LOCAL_TENANT, Task, table_of
from tests.contract.test_store_driver import a_worker_flow, submit
from tests.support.faults import PROXY
from tests.support.processes import Background, free_port
from tests.support.services import PG_ADMIN_URL, fresh_postgres_database


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(async_database_url(postgres_url))
    await upgrade(database)
    yield database
    await database.dispose()


def no_sqlalchemy_pool(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused() -> Any:
        raise AssertionError("read through SQLAlchemy's pool")

    monkeypatch.setattr(db, "read_connection", refused)


def columns(task: Task) -> dict[str, Any]:
    return {column.name: getattr(task, column.name) for column in table_of(Task).columns}


async def through_sqlalchemy(db: Database, task_id: str, monkeypatch: pytest.MonkeyPatch) -> Task:
    async def no_driver(_connection: Any) -> None:
        return None

    with monkeypatch.context() as patched:
        patched.setattr(driver, "driver_of", no_driver)
        async with db.read_connection() as connection:
            return await store.read_task(connection, task_id, tenant=LOCAL_TENANT)


async def test_the_pool_reads_every_column_as_sqlalchemy_does(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await a_worker_flow(pg, on_driver=True)
    async with pg.session() as session:
        ids = list(await session.scalars(text("SELECT id FROM tasks")))
    assert len(ids) == 5
    expected = {
        task_id: columns(await through_sqlalchemy(pg, task_id, monkeypatch)) for task_id in ids
    }
    no_sqlalchemy_pool(pg, monkeypatch)
    read = {
        task_id: columns(await store.read_task_from(pg, task_id, tenant=LOCAL_TENANT))
        for task_id in ids
    }
    assert read == expected
    # Values of the same types, not only equal ones: JSON as Python objects, aware datetimes.
    for task_id in ids:
        for name, value in read[task_id].items():
            assert type(value) is type(expected[task_id][name]), name
    assert any(isinstance(row["result"], dict) for row in read.values())
    assert all(row["created_at"].tzinfo is not None for row in read.values())
    with pytest.raises(TaskNotFound):
        await store.read_task_from(pg, ids[0], tenant="someone-else")


async def test_sqlite_has_no_read_pool(tmp_path: Any) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await upgrade(db)
    task = await submit(db)
    assert db.read_pool is None
    assert (await store.read_task_from(db, task.id, tenant=LOCAL_TENANT)).id == task.id
    await db.dispose()


@asynccontextmanager
async def proxied(database_url: str) -> AsyncIterator[tuple[Database, Background]]:
    port = free_port()
    proxy = Background([sys.executable, str(PROXY), str(port), "5432"], port)
    proxy.start()
    url = make_url(database_url).set(port=port).render_as_string(hide_password=False)
    db = Database(async_database_url(url))
    try:
        yield db, proxy
    finally:
        proxy.kill()
        await db.dispose()


async def test_an_outage_is_the_database_unavailable_with_or_without_a_pool_made() -> None:
    with fresh_postgres_database() as database_url:
        async with proxied(database_url) as (db, proxy):
            await upgrade(db)
            task = await submit(db)
            assert (await store.read_task_from(db, task.id, tenant=LOCAL_TENANT)).id == task.id
            assert db.read_pool is not None and await db.read_pool.get() is not None
            proxy.kill()
            with pytest.raises(DatabaseUnavailable):
                await store.read_task_from(db, task.id, tenant=LOCAL_TENANT)
        async with proxied(database_url) as (db, proxy):
            proxy.kill()  # out before the pool is ever made
            with pytest.raises(DatabaseUnavailable):
                await store.read_task_from(db, task.id, tenant=LOCAL_TENANT)


async def test_dispose_closes_the_pool_so_the_database_can_be_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fresh_postgres_database() as database_url:
        db = Database(async_database_url(database_url))
        await upgrade(db)
        task = await submit(db)
        no_sqlalchemy_pool(db, monkeypatch)
        assert (await store.read_task_from(db, task.id, tenant=LOCAL_TENANT)).id == task.id
        await db.dispose()
        name = make_url(database_url).database
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            # Without FORCE: refused while any connection to it is open.
            await admin.execute(f'DROP DATABASE "{name}"')
        finally:
            await admin.close()
