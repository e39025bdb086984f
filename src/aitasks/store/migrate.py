"""Alembic migrations, run from code (`aitasks db upgrade`, and `aitasks up` at start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from aitasks.errors import ConfigError
from aitasks.store.database import Database, sqlstate

# SQLSTATEs: the database named does not exist; the role may not do what was asked.
INVALID_CATALOG_NAME = "3D000"
INSUFFICIENT_PRIVILEGE = "42501"
# Where a PostgreSQL role connects to create a database that does not exist yet.
MAINTENANCE_DATABASE = "postgres"

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
    """Which revision the database is at, and which one this code needs. A database that does not
    exist is a `ConfigError` saying what to run, not a driver's traceback."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    try:
        async with db.engine.connect() as connection:
            current = await connection.run_sync(read)
    except DBAPIError as exc:
        if sqlstate(exc) != INVALID_CATALOG_NAME:
            raise
        name = make_url(db.url).database
        raise ConfigError(
            f"database {name!r} does not exist: run `aitasks db upgrade`, which creates it"
        ) from None
    return SchemaState(current=current, head=head_revision())


async def create_database_if_missing(db: Database) -> bool:
    """Create the PostgreSQL database `db` names when it does not exist, as `createdb` would;
    returns whether it did. A role that may not create it gets one line saying what to run."""
    if db.is_sqlite:
        return False  # SQLite makes its file on first connect
    try:
        async with db.engine.connect():
            return False
    except DBAPIError as exc:
        if sqlstate(exc) != INVALID_CATALOG_NAME:
            raise
    url = make_url(db.url)
    maintenance = create_async_engine(
        url.set(database=MAINTENANCE_DATABASE), isolation_level="AUTOCOMMIT"
    )
    try:
        async with maintenance.connect() as connection:
            await _create_database(connection, url.database or "", url.username or "")
    finally:
        await maintenance.dispose()
    return True


async def _create_database(connection: AsyncConnection, name: str, role: str) -> None:
    quoted = connection.dialect.identifier_preparer.quote_identifier(name)
    try:
        await connection.execute(text(f"CREATE DATABASE {quoted}"))
    except DBAPIError as exc:
        if sqlstate(exc) != INSUFFICIENT_PRIVILEGE:
            raise
        raise ConfigError(
            f"database {name!r} does not exist and role {role!r} may not create it: "
            f"run `createdb {name}` as a role that may, then `aitasks db upgrade`"
        ) from None


async def upgrade(db: Database) -> SchemaState:
    """Create the database if it is missing, then bring the schema to the newest revision;
    returns the state before the upgrade."""
    await create_database_if_missing(db)
    before = await schema_state(db)
    if not before.up_to_date:

        def run(connection: Connection) -> None:
            command.upgrade(_config(connection), "head")

        async with db.engine.begin() as connection:
            await connection.run_sync(run)
    return before
