"""Migration 0008 keeps every idempotency key, now scoped by (tenant, key), on both stores: each
stored "<tenant>/<key>" is split by its task's tenant, so `acme` + `dev/k1` and `acme/dev` + `k1`
come out apart. And back again on a downgrade."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from aitasks.store.database import Database
from tests.support.migrations import migrate, rows

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


async def test_stored_keys_are_split_by_their_tasks_tenant(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate(db, "0007")
        async with db.engine.begin() as connection:
            for n, tenant in enumerate(("acme", "acme/dev")):
                await connection.execute(
                    text(
                        "INSERT INTO conversations (id, tenant, title, turns, created_at, "
                        "updated_at) VALUES (:id, :tenant, 't', 1, :now, :now)"
                    ),
                    {"id": f"c{n}", "tenant": tenant, "now": NOW},
                )
                await connection.execute(
                    text(
                        "INSERT INTO tasks (id, tenant, conversation_id, turn, kind, model, queue, "
                        "provider, prompt, status, attempts, created_at, updated_at) VALUES "
                        "(:id, :tenant, :c, 1, 'chat', 'mock-chat', 'chat', 'mock', 'p', "
                        "'PENDING', 0, :now, :now)"
                    ),
                    {"id": f"t{n}", "tenant": tenant, "c": f"c{n}", "now": NOW},
                )
            # Before 0008 these two could not both exist: acme's "dev/k1" took acme/dev's "k1".
            for stored, task in (("acme/dev/k1", "t0"), ("acme/dev/k2", "t1")):
                await connection.execute(
                    text(
                        "INSERT INTO idempotency_keys (key, request_hash, task_id, created_at) "
                        "VALUES (:key, 'h', :task, :now)"
                    ),
                    {"key": stored, "task": task, "now": NOW},
                )
        await migrate(db, "0008")
        scoped = "SELECT tenant, key, task_id FROM idempotency_keys ORDER BY tenant, key"
        assert await rows(db, scoped) == [("acme", "dev/k1", "t0"), ("acme/dev", "k2", "t1")]
        # The same client key under two tenants is two rows now.
        async with db.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO idempotency_keys (tenant, key, request_hash, task_id, created_at)"
                    " VALUES ('acme/dev', 'dev/k1', 'h', 't1', :now)"
                ),
                {"now": NOW},
            )
        await migrate(db, "0007", down=True)
        await migrate(db, "0008")
        assert await rows(db, scoped) == [
            ("acme", "dev/k1", "t0"),
            ("acme/dev", "dev/k1", "t1"),
            ("acme/dev", "k2", "t1"),
        ]
    finally:
        await db.dispose()
