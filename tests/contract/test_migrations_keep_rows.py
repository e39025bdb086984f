"""Every migration keeps what is stored, up to the newest revision and back down again, on both
stores. SQLite rebuilds a table to change it (create a copy, drop the old one, rename): with
foreign keys on, dropping the old `tasks` would cascade into its messages, files and idempotency
keys. A conversation with one task of each kind of dependant must come through whole."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from aitasks.store.database import Database
from tests.support.migrations import migrate, rows

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
TABLES = ("conversations", "tasks", "messages", "files", "idempotency_keys")
# The revision before which the schema held every table above; what follows it changes `tasks`.
BASE = "0007"
ROWS = (
    "INSERT INTO conversations (id, tenant, title, turns, created_at, updated_at) "
    "VALUES ('c1', 'local', 't', 1, :now, :now)",
    "INSERT INTO tasks (id, tenant, conversation_id, turn, kind, model, queue, provider, prompt, "
    "status, attempts, created_at, updated_at) VALUES ('t1', 'local', 'c1', 1, 'chat', "
    "'mock-chat', 'mock', 'mock', 'p', 'SUCCESS', 1, :now, :now)",
    "INSERT INTO messages (conversation_id, turn, role, content, files, task_id, created_at) "
    "VALUES ('c1', 1, 'user', 'p', '[]', 't1', :now)",
    "INSERT INTO files (id, task_id, content_type, size, storage_key, created_at) "
    "VALUES ('f1', 't1', 'image/png', 1, 'c1/f1.png', :now)",
    "INSERT INTO idempotency_keys (key, request_hash, task_id, created_at) "
    "VALUES ('local/k1', 'h', 't1', :now)",
)


async def counts(db: Database) -> dict[str, object]:
    return {table: (await rows(db, f"SELECT count(*) FROM {table}"))[0][0] for table in TABLES}


async def test_upgrading_and_downgrading_keeps_every_row(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate(db, BASE)
        async with db.engine.begin() as connection:
            for statement in ROWS:
                await connection.execute(text(statement), {"now": NOW})
        every_one = dict.fromkeys(TABLES, 1)
        assert await counts(db) == every_one
        await migrate(db, "head")
        assert await counts(db) == every_one
        await migrate(db, BASE, down=True)
        assert await counts(db) == every_one
    finally:
        await db.dispose()
