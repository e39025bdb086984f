"""The `tasks` table as migration 0015 leaves it: the migrations and the ORM models make the same
indexes (partial ones with the same predicates) on both stores, the same storage parameters on
PostgreSQL, and there a task's claim and lease renewal are HOT updates (no index names a column
they change), while the scans of unfinished tasks still go through an index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from aitasks.config import async_database_url
from aitasks.store.database import Database
from aitasks.store.models import TASKS_STORAGE, Base
from tests.support.migrations import indexes, migrate
from tests.support.services import fresh_postgres_database

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
# What a claim sets, then what a lease renewal sets (store/claims.py).
CLAIM = (
    "UPDATE tasks SET status = 'RUNNING', attempts = attempts + 1, worker_id = 'w1', "
    "lease_until = :now, started_at = :now, updated_at = :now WHERE id = 't1'"
)
RENEW = "UPDATE tasks SET lease_until = :now, updated_at = :now WHERE id = 't1'"
HOT_UPDATES = "SELECT pg_stat_get_xact_tuples_hot_updated('tasks'::regclass)"


@pytest.fixture
async def from_models(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A database of the same kind, its tables made from the ORM models rather than migrated."""
    if database_url.startswith("sqlite"):
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'models.db'}")
        async with db.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield db
        await db.dispose()
        return
    with fresh_postgres_database() as url:
        db = Database(async_database_url(url))
        async with db.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield db
        await db.dispose()


async def test_migrations_and_models_make_the_same_tasks_table(
    database_url: str, from_models: Database
) -> None:
    migrated = Database(database_url)
    try:
        await migrate(migrated, "head")
        made = await indexes(from_models)
        assert await indexes(migrated) == made
        assert "finished_at IS NULL" in made["ix_tasks_unfinished"]
        if migrated.engine.dialect.name == "postgresql":
            options = "SELECT reloptions FROM pg_class WHERE relname = 'tasks'"
            for db in (migrated, from_models):
                async with db.engine.connect() as connection:
                    stored = (await connection.execute(text(options))).scalar_one()
                assert sorted(stored) == sorted(f"{k}={v}" for k, v in TASKS_STORAGE.items())
    finally:
        await migrated.dispose()


async def add_task(connection: AsyncConnection) -> None:
    await connection.execute(
        text(
            "INSERT INTO conversations (id, tenant, turns, created_at, updated_at) "
            "VALUES ('c1', 'local', 1, :now, :now)"
        ),
        {"now": NOW},
    )
    await connection.execute(
        text(
            "INSERT INTO tasks (id, tenant, conversation_id, turn, kind, model, queue, provider, "
            "prompt, status, attempts, created_at, updated_at, priority, weight) VALUES ('t1', "
            "'local', 'c1', 1, 'chat', 'mock-chat', 'mock', 'mock', 'p', 'PENDING', 0, :now, "
            ":now, 'default', 1)"
        ),
        {"now": NOW},
    )


async def test_a_claim_and_a_lease_renewal_are_hot_updates(postgres_url: str) -> None:
    db = Database(async_database_url(postgres_url))
    try:
        await migrate(db, "head")
        async with db.engine.begin() as connection:
            await add_task(connection)
        for update in (CLAIM, RENEW):
            async with db.engine.begin() as connection:
                # The backend's counts not yet sent to the statistics: read before and after.
                before = (await connection.execute(text(HOT_UPDATES))).scalar_one()
                await connection.execute(text(update), {"now": NOW})
                after = (await connection.execute(text(HOT_UPDATES))).scalar_one()
                assert after - before == 1, update
        # The reconciler's scan of unfinished tasks still reads an index, not the table.
        async with db.engine.begin() as connection:
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(
                row[0]
                for row in await connection.execute(
                    text(
                        "EXPLAIN SELECT id FROM tasks WHERE finished_at IS NULL AND "
                        "status = 'RUNNING' AND lease_until < :now ORDER BY created_at LIMIT 10"
                    ),
                    {"now": NOW},
                )
            )
        assert "ix_tasks_unfinished" in plan, plan
    finally:
        await db.dispose()
