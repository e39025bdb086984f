"""Statements of our own SQL sent to asyncpg itself on PostgreSQL, with SQLAlchemy behind them
for the errors: the worker's flush of finishes (`finishes.flush_sql`) and the gateway's group of
first turns (`submit_batch.first_turns_sql`) go this way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from aitasks.store import driver
from aitasks.store.driver import Driver

Rows = Sequence[Sequence[Any]]


class OnPostgres:
    """Where a flush's (or a group's) statements go on PostgreSQL: to asyncpg itself, each
    prepared once per connection (`driver.prepared`) and committed alone; after an error of the
    driver's, that statement and the rest again through SQLAlchemy's connection, in its
    transaction, so that an outage is `DatabaseUnavailable` and a refused row is SQLAlchemy's
    error, as everywhere else (`database.database_boundary`). Rows are answered as the driver
    gives them, none for a statement that returns none."""

    def __init__(self, connection: AsyncConnection, raw: Driver | None) -> None:
        self.connection = connection
        self.raw = raw

    async def fetch(self, sql: str, args: Sequence[Any]) -> Rows:
        """One statement: on the driver, committed alone (atomic by itself); after an error of
        the driver's, through SQLAlchemy's connection, in its transaction."""
        raw = self.raw
        if raw is not None:
            try:
                return await self.fetch_on_driver(sql, args)
            except Exception:
                driver.forget(raw)  # one of its statements may be stale
                self.raw = None  # the statement failed whole: run it again below
        return await self._through_sqlalchemy(sql, args)

    async def fetch_on_driver(self, sql: str, args: Sequence[Any]) -> Rows:
        """One statement on the driver, committed alone, its error raised as the driver's."""
        assert self.raw is not None
        rows: Rows = await (await driver.prepared(self.raw, sql)).fetch(*args)
        return rows

    async def _through_sqlalchemy(self, sql: str, args: Sequence[Any]) -> Rows:
        result = await self.connection.exec_driver_sql(sql, tuple(args))
        return result.all() if result.returns_rows else []
