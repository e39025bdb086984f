"""Statements of our own SQL sent to asyncpg itself on PostgreSQL, with SQLAlchemy behind them
for the errors: the worker's flush of finishes (`finishes.flush_sql`, in one transaction) and the
gateway's group of first turns (`submit_batch.first_turns_sql`, one statement) go this way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from aitasks.store import driver
from aitasks.store.driver import Driver

T = TypeVar("T")
Rows = Sequence[Sequence[Any]]
# Runs one statement (SQL and its parameters in order) and answers its rows.
Fetch = Callable[[str, Sequence[Any]], Awaitable[Rows]]


class OnPostgres:
    """Where a flush's (or a group's) statements go on PostgreSQL: to asyncpg itself, each
    prepared once per connection (`driver.prepared`); after an error of the driver's, the same
    statements again through SQLAlchemy's connection, in its transaction, so that an outage is
    `DatabaseUnavailable` and a refused row is SQLAlchemy's error, as everywhere else
    (`database.database_boundary`). Rows are answered as the driver gives them, none for a
    statement that returns none."""

    def __init__(self, connection: AsyncConnection, raw: Driver | None) -> None:
        self.connection = connection
        self.raw = raw

    async def fetch(self, sql: str, args: Sequence[Any]) -> Rows:
        """One statement, atomic alone: on the driver, committed by itself."""
        return await self._run(lambda fetch: fetch(sql, args), begin=False)

    async def in_transaction(self, work: Callable[[Fetch], Awaitable[T]]) -> T:
        """`work`'s statements (it sends them through the `Fetch` it is given), all or none: on
        the driver between a BEGIN and a COMMIT of their own."""
        return await self._run(work, begin=True)

    async def _run(self, work: Callable[[Fetch], Awaitable[T]], *, begin: bool) -> T:
        raw = self.raw
        if raw is not None:
            try:
                if not begin:
                    return await work(partial(_on_driver, raw))
                async with raw.transaction():
                    return await work(partial(_on_driver, raw))
            except Exception:
                driver.forget(raw)  # one of its statements may be stale
                self.raw = None  # what it did was rolled back: run it again below
        return await work(self._through_sqlalchemy)

    async def _through_sqlalchemy(self, sql: str, args: Sequence[Any]) -> Rows:
        result = await self.connection.exec_driver_sql(sql, tuple(args))
        return result.all() if result.returns_rows else []


async def _on_driver(raw: Driver, sql: str, args: Sequence[Any]) -> Rows:
    rows: Rows = await (await driver.prepared(raw, sql)).fetch(*args)
    return rows
