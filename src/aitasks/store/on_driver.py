"""Statements of our own SQL sent to asyncpg itself on PostgreSQL, with SQLAlchemy behind them
for the errors: the worker's flush of finishes (`finishes.flush_sql`) and the gateway's group of
first turns (`submit_batch.first_turns_sql`) go this way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from aitasks.store import driver
from aitasks.store.driver import Driver


class OnPostgres:
    """Where a flush's (or a group's) statements go on PostgreSQL: to asyncpg itself, each
    prepared once per connection (`driver.prepared`), outside any transaction (each statement
    commits alone); after an error of the driver's, that statement and the rest of the flush go
    through SQLAlchemy's connection, the same SQL, so that an outage is `DatabaseUnavailable` and
    a refused row is SQLAlchemy's error, as everywhere else (`database.database_boundary`).
    `fetch` answers the rows, none for a statement that returns none."""

    def __init__(self, connection: AsyncConnection, raw: Driver | None) -> None:
        self.connection = connection
        self.raw = raw

    async def fetch(self, sql: str, args: Sequence[Any]) -> Sequence[Sequence[Any]]:
        if self.raw is not None:
            try:
                rows: Sequence[Sequence[Any]] = await (await driver.prepared(self.raw, sql)).fetch(
                    *args
                )
                return rows
            except Exception:
                driver.forget(self.raw)  # one of its statements may be stale
                self.raw = None  # the statement failed whole: run it again below
        result = await self.connection.exec_driver_sql(sql, tuple(args))
        return result.all() if result.returns_rows else []
