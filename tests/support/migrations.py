"""Running Alembic to a given revision, and reading rows, for the migration tests."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from aitasks.store.database import Database
from aitasks.store.migrate import _config

# Each index of the `tasks` table and the statement that makes it.
INDEXES = {
    "postgresql": "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks'",
    "sqlite": "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'",
}


async def migrate(db: Database, revision: str, *, down: bool = False) -> None:
    def run(connection: Connection) -> None:
        (command.downgrade if down else command.upgrade)(_config(connection), revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(run)


async def rows(db: Database, sql: str) -> list[tuple[object, ...]]:
    async with db.engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(text(sql))]


async def indexes(db: Database) -> dict[str, str]:
    """The `tasks` table's indexes by name, with the statement that makes each."""
    async with db.engine.connect() as connection:
        query = INDEXES[connection.dialect.name]
        return {name: sql for name, sql in await connection.execute(text(query)) if sql}
