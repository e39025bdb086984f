"""The SQL statements a database is sent meanwhile, by SQLAlchemy or by asyncpg itself (the
hot paths' statements, `store/driver.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from aitasks.store import driver
from aitasks.store.database import Database

SQLALCHEMY, DRIVER = "sqlalchemy", "driver"
# How the statement of a group of first turns starts (`submit_batch.first_turns_sql`).
GROUP_STATEMENT = "WITH w0 AS (INSERT INTO conversations"


@dataclass(frozen=True, slots=True)
class Sent:
    by: str  # SQLALCHEMY or DRIVER
    sql: str

    @property
    def verb(self) -> str:
        return self.sql.split()[0].rstrip(";").upper()


@asynccontextmanager
async def statements(db: Database) -> AsyncIterator[list[Sent]]:
    """Every statement sent meanwhile, in order (the driver's own BEGIN and COMMIT left out), by
    SQLAlchemy, by the driver on SQLAlchemy's connections and on asyncpg's own pool."""
    seen: list[Sent] = []

    def by_sqlalchemy(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(Sent(SQLALCHEMY, " ".join(statement.split())))

    async def by_driver(connection: Any, sql: str) -> Any:
        seen.append(Sent(DRIVER, " ".join(sql.split())))
        return await prepare(connection, sql)

    async def by_driver_pool(pool: Any, statement: Any, values: Any) -> Any:
        seen.append(Sent(DRIVER, " ".join(statement.sql_and_args(values)[0].split())))
        return await fetch_pooled(pool, statement, values)

    engine = db.engine.sync_engine
    prepare, fetch_pooled = driver.prepared, driver.fetch_pooled
    event.listen(engine, "before_cursor_execute", by_sqlalchemy)
    driver.prepared = by_driver  # type: ignore[assignment]
    driver.fetch_pooled = by_driver_pool  # type: ignore[assignment]
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", by_sqlalchemy)
        driver.prepared = prepare  # type: ignore[assignment]
        driver.fetch_pooled = fetch_pooled  # type: ignore[assignment]


@contextmanager
def connection_cut_at(postgres_url: str, sql_start: str) -> Iterator[list[int]]:
    """The first connection of the driver's to prepare a statement starting with `sql_start` is
    killed (`pg_terminate_backend`) as it does: its statement is sent to a dead connection.
    Yields the killed backends' pids (one, once it has happened)."""
    cut: list[int] = []
    real = driver.prepared

    async def cut_first(connection: Any, sql: str) -> Any:
        if not cut and sql.startswith(sql_start):
            pid = connection.get_server_pid()
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            cut.append(pid)
        return await real(connection, sql)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(driver, "prepared", cut_first)
        yield cut
