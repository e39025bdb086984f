"""Migration 0014 gives conversations their `metadata` column (the Conversations API's) and takes
it away again, on both stores, keeping every conversation and what hangs off it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from aitasks.store.database import Database
from tests.support.migrations import migrate, rows

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
ROWS = (
    "INSERT INTO conversations (id, tenant, title, turns, created_at, updated_at) "
    "VALUES ('c1', 'local', 't', 1, :now, :now)",
    "INSERT INTO messages (conversation_id, turn, role, content, files, created_at) "
    "VALUES ('c1', 1, 'user', 'p', '[]', :now)",
)


async def columns(db: Database) -> set[str]:
    def read(connection: Connection) -> set[str]:
        return {c["name"] for c in inspect(connection).get_columns("conversations")}

    async with db.engine.connect() as connection:
        return await connection.run_sync(read)


async def test_conversation_metadata_up_and_down(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate(db, "0013")
        async with db.engine.begin() as connection:
            for statement in ROWS:
                await connection.execute(text(statement), {"now": NOW})
        assert "metadata" not in await columns(db)
        await migrate(db, "0014")
        assert await rows(db, "SELECT id, metadata FROM conversations") == [("c1", None)]
        async with db.engine.begin() as connection:
            await connection.execute(
                text("UPDATE conversations SET metadata = :m"), {"m": '{"topic": "art"}'}
            )
        (stored,) = (await rows(db, "SELECT metadata FROM conversations"))[0]
        assert stored in ('{"topic": "art"}', {"topic": "art"})
        await migrate(db, "0013", down=True)
        assert "metadata" not in await columns(db)
        assert await rows(db, "SELECT id, title FROM conversations") == [("c1", "t")]
        assert await rows(db, "SELECT count(*) FROM messages") == [(1,)]
        await migrate(db, "head")
        assert "metadata" in await columns(db)
    finally:
        await db.dispose()
