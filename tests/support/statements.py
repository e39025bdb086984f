"""The SQL statements a database is sent meanwhile, by SQLAlchemy or by asyncpg itself (the
hot paths' statements, `store/driver.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event

from aitasks.store.database import Database

SQLALCHEMY, DRIVER = "sqlalchemy", "driver"
# asyncpg reading how a type (an array of ids) is encoded, once a connection: not the caller's.
INTROSPECTION = ("typeinfo_tree", "set_config('jit'")


@dataclass(frozen=True, slots=True)
class Sent:
    by: str  # SQLALCHEMY or DRIVER
    sql: str

    @property
    def verb(self) -> str:
        return self.sql.split()[0].rstrip(";").upper()


@asynccontextmanager
async def statements(db: Database) -> AsyncIterator[list[Sent]]:
    """Every statement sent meanwhile, in order (BEGIN and COMMIT by the driver included)."""
    seen: list[Sent] = []
    watched: list[Any] = []

    def by_sqlalchemy(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(Sent(SQLALCHEMY, " ".join(statement.split())))

    def by_driver(query: Any) -> None:
        sql = " ".join(query.query.split())
        if not any(marker in sql for marker in INTROSPECTION):
            seen.append(Sent(DRIVER, sql))

    def watch(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # asyncpg logs the statements sent by its own calls, not SQLAlchemy's prepared ones.
        driver = dbapi_connection.driver_connection
        if hasattr(driver, "add_query_logger") and driver not in watched:
            driver.add_query_logger(by_driver)
            watched.append(driver)

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", by_sqlalchemy)
    event.listen(engine, "checkout", watch)
    try:
        yield seen
        await asyncio.sleep(0)  # asyncpg calls its loggers soon after, not at once
    finally:
        event.remove(engine, "before_cursor_execute", by_sqlalchemy)
        event.remove(engine, "checkout", watch)
        for driver in watched:
            driver.remove_query_logger(by_driver)
