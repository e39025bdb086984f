"""The SQL statements a database is sent meanwhile, by SQLAlchemy or by asyncpg itself (the
hot paths' statements, `store/driver.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event

from aitasks.store import driver
from aitasks.store.database import Database

SQLALCHEMY, DRIVER = "sqlalchemy", "driver"


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
