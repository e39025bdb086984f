"""Alembic migrations, run from code (`aitasks db upgrade`, and `aitasks up` at start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from aitasks.store.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


async def schema_state(db: Database) -> SchemaState:
    """Which revision the database is at, and which one this code needs."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as connection:
        current = await connection.run_sync(read)
    return SchemaState(current=current, head=head_revision())


async def upgrade(db: Database) -> SchemaState:
    """Bring the schema to the newest revision; returns the state before the upgrade."""
    before = await schema_state(db)
    if not before.up_to_date:

        def run(connection: Connection) -> None:
            command.upgrade(_config(connection), "head")

        async with db.engine.begin() as connection:
            await connection.run_sync(run)
    return before
