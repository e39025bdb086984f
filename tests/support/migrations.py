"""Running Alembic to a given revision, and reading rows, for the migration tests."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from aitasks.store.database import Database
from aitasks.store.migrate import _config


async def migrate(db: Database, revision: str, *, down: bool = False) -> None:
    def run(connection: Connection) -> None:
        (command.downgrade if down else command.upgrade)(_config(connection), revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(run)


async def rows(db: Database, sql: str) -> list[tuple[object, ...]]:
    async with db.engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(text(sql))]
