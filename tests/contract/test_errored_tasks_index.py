"""Migration 0016: listing a tenant's failed tasks goes through the partial index of errored
tasks (migration 0015 had dropped the `status` index, so the listing walked the tenant's whole
history), the index comes and goes with the migration on both stores, and a task that ends well
never enters it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text

from aitasks.config import async_database_url
from aitasks.store import claims
from aitasks.store import tasks as store
from aitasks.store.database import Database
from aitasks.store.models import LOCAL_TENANT, Task, TaskStatus
from tests.support.migrations import indexes, migrate, rows
from tests.support.store_rows import claim, complete, submit

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
INDEX = "ix_tasks_tenant_errored"
# A tenant's history: many tasks that succeeded, one in a thousand failed.
HISTORY = (
    "INSERT INTO conversations (id, tenant, turns, created_at, updated_at) "
    "VALUES ('c1', 'local', 20000, :now, :now)",
    "INSERT INTO tasks (id, tenant, conversation_id, turn, kind, model, queue, provider, prompt, "
    "status, error, attempts, created_at, updated_at, priority, weight) "
    "SELECT 't' || n, 'local', 'c1', n, 'chat', 'mock-chat', 'mock', 'mock', 'p', "
    "CASE WHEN n % 1000 = 0 THEN 'FAILED' ELSE 'SUCCESS' END, "
    'CASE WHEN n % 1000 = 0 THEN \'{"type": "provider"}\'::json END, 1, '
    "CAST(:now AS timestamptz) + n * interval '1 second', :now, 'default', 1 "
    "FROM generate_series(1, 20000) AS n",
    "ANALYZE tasks",
)


async def test_the_errored_index_up_and_down(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate(db, "0015")
        assert INDEX not in await indexes(db)
        await migrate(db, "0016")
        assert "error IS NOT NULL" in (await indexes(db))[INDEX]
        await migrate(db, "0015", down=True)
        assert INDEX not in await indexes(db)
        await migrate(db, "head")
        assert INDEX in await indexes(db)
    finally:
        await db.dispose()


async def test_listing_failed_tasks_reads_the_errored_index(postgres_url: str) -> None:
    db = Database(async_database_url(postgres_url))
    try:
        await migrate(db, "head")
        async with db.engine.begin() as connection:
            for statement in HISTORY:
                await connection.execute(text(statement), {"now": NOW})
        sent: list[tuple[str, Any]] = []

        def record(_c: object, _cur: object, statement: str, params: Any, *_: object) -> None:
            sent.append((statement, params))

        event.listen(db.engine.sync_engine, "before_cursor_execute", record)
        async with db.session() as session:
            failed = await store.list_tasks(session, tenant=LOCAL_TENANT, status=TaskStatus.FAILED)
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        assert [task.id for task in failed] == [f"t{n}" for n in range(20000, 0, -1000)]
        ((query, params),) = sent
        async with db.engine.connect() as connection:
            plan = await connection.exec_driver_sql(f"EXPLAIN {query}", params)
            lines = "\n".join(row[0] for row in plan)
        assert INDEX in lines, lines
        assert "Seq Scan" not in lines, lines
    finally:
        await db.dispose()


@asynccontextmanager
async def a_claimed_task(database_url: str) -> AsyncIterator[tuple[Database, Task]]:
    """A migrated store holding one task, claimed by worker w1."""
    db = Database(database_url)
    try:
        await migrate(db, "head")
        held = await claim(db, (await submit(db)).id)
        assert held.task is not None
        yield db, held.task
    finally:
        await db.dispose()


async def test_a_task_that_succeeds_stays_out_of_the_errored_index(database_url: str) -> None:
    async with a_claimed_task(database_url) as (db, task):
        await complete(db, task)
        assert await rows(db, "SELECT status, error IS NULL FROM tasks") == [("SUCCESS", True)]


async def test_a_retried_task_leaves_the_errored_index(database_url: str) -> None:
    async with a_claimed_task(database_url) as (db, task):
        async with db.session() as session:
            await claims.fail_task(
                session, task, worker_id="w1", error_type="provider", message="down"
            )
        assert await rows(db, "SELECT status, error IS NULL FROM tasks") == [("FAILED", False)]
        async with db.session() as session:
            await store.retry_task(session, task.id, tenant=LOCAL_TENANT)
        assert await rows(db, "SELECT status, error IS NULL, result IS NULL FROM tasks") == [
            ("PENDING", True, True)
        ]
