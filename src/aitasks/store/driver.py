"""Statements sent to asyncpg itself, under SQLAlchemy's connection, on the hot paths.

SQLAlchemy's work per statement (the compiled cache's lookup, binding, the result's rows) cost
several times the driver's on PostgreSQL (issue 20: a claim 0.9 ms against 0.1, a finish 1.5 ms
against 0.3). So a hot statement is compiled once, from the same Core statement the SQLAlchemy
path runs, into the driver's SQL and the order of its parameters, and run on the asyncpg
connection under the pooled one. SQLite has no such driver: there, and after any error of the
driver's, the caller runs the statement through SQLAlchemy again, which tells an outage from
the rest (`database.database_boundary`) and invalidates a broken connection.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import operator
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]  # no type hints: its objects are Any here
from sqlalchemy import JSON, bindparam
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

# Only for compiling: the SQL and types are those SQLAlchemy itself sends to asyncpg.
DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]
# An `asyncpg.Connection` (asyncpg has no type hints).
Driver = Any


async def driver_of(connection: AsyncConnection) -> Driver | None:
    """The asyncpg connection under `connection`, or None on SQLite. Its JSON codecs are those
    SQLAlchemy set when it opened the connection: text in (`DriverStatement` encodes), values
    out."""
    if connection.dialect.name != "postgresql":
        return None
    return (await connection.get_raw_connection()).driver_connection


class DriverStatement:
    """A Core statement compiled once for asyncpg; `sql_and_args` gives the SQL and positional
    parameters for named values. A list parameter (`IN` of the ids) becomes one parameter per
    item, one SQL text per length, exactly as SQLAlchemy sends the same statement, so both paths
    run the very same SQL. Constants (statuses in a WHERE) are the statement's own; a JSON value
    is encoded as SQLAlchemy's JSON type does (`None` is JSON `null`, not SQL NULL)."""

    def __init__(self, statement: ClauseElement) -> None:
        self._compiled = cast(SQLCompiler, statement.compile(dialect=DIALECT))
        binds = self._compiled.binds.items()
        self._unset = {name: None for name, bind in binds if bind.required}
        self._lists = tuple(name for name, bind in binds if bind.required and bind.expanding)
        self._json = frozenset(name for name, bind in binds if isinstance(bind.type, JSON))
        self._shapes: dict[tuple[int, ...], _Shape] = {}

    def sql_and_args(self, values: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL for these values (their lists' lengths) and its positional parameters."""
        lengths = tuple(len(values[name]) for name in self._lists)
        shape = self._shapes.get(lengths)
        if shape is None:
            shape = self._shapes[lengths] = self._shape(values)
        return shape.sql, [value(values) for value in shape.values]

    def many(self, rows: Sequence[Mapping[str, Any]]) -> tuple[str, list[list[Any]]]:
        """The SQL and parameters for `executemany` (rows without lists)."""
        sql, _ = self.sql_and_args(rows[0])
        return sql, [self.sql_and_args(row)[1] for row in rows]

    def _shape(self, values: Mapping[str, Any]) -> _Shape:
        named = {**self._unset, **{name: values[name] for name in self._lists}}
        expanded = self._compiled.construct_expanded_state(self._compiled.construct_params(named))
        item_of = {
            item: (name, index)
            for name, items in expanded.parameter_expansion.items()
            if name in self._lists
            for index, item in enumerate(items)
        }
        getters = []
        for name in expanded.positiontup or ():
            if name in item_of:
                getters.append(_item(*item_of[name]))
            elif name in self._json:
                getters.append(_json(name))
            elif name in self._unset:
                getters.append(operator.itemgetter(name))
            else:
                getters.append(_constant(expanded.parameters[name]))
        return _Shape(expanded.statement, tuple(getters))


@dataclass(frozen=True, slots=True)
class _Shape:
    sql: str
    # Each positional parameter's value, from the named values.
    values: tuple[Callable[[Mapping[str, Any]], Any], ...]


def _item(name: str, index: int) -> Callable[[Mapping[str, Any]], Any]:
    return lambda values: values[name][index]


def _json(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda values: json.dumps(values[name])


def _constant(value: Any) -> Callable[[Mapping[str, Any]], Any]:
    return lambda _values: value


# Each driver connection's prepared statements, by SQL, as SQLAlchemy keeps its own: measured,
# the statements prepared once and reused cost PostgreSQL a third of what asyncpg's own
# `fetch(sql)` did for the same claim (133 against 300-500 µs, growing as the table did).
_PREPARED: weakref.WeakKeyDictionary[Any, dict[str, _Prepared]] = weakref.WeakKeyDictionary()
# Past this many on a connection (one per statement and list length), start again.
PREPARED_PER_CONNECTION = 200
# A statement is prepared again once this old, then twice as old, up to the last: PostgreSQL
# plans a prepared statement once for all (its generic plan, after five of its own) as the
# tables were then, and a plan made while `tasks` was nearly empty (a fresh database) scans it
# whole. Where autovacuum is on, its ANALYZE replans too; where it is off (the CI server), this
# does, each plan made with the table at least about half its size at the next.
REPLAN_FIRST_SECONDS = 1.0
REPLAN_LAST_SECONDS = 60.0


@dataclass(slots=True)
class _Prepared:
    statement: Any
    until: float  # prepared again from then on (time.monotonic)
    lifetime: float


async def prepared(connection: Driver, sql: str) -> Any:
    """The connection's statement prepared for `sql` (every statement this module sends goes
    through here)."""
    statements = _PREPARED.get(connection)
    if statements is None or len(statements) >= PREPARED_PER_CONNECTION:
        statements = _PREPARED[connection] = {}
    found = statements.get(sql)
    now = time.monotonic()
    if found is None or now >= found.until:
        lifetime = REPLAN_FIRST_SECONDS if found is None else found.lifetime * 2
        lifetime = min(lifetime, REPLAN_LAST_SECONDS)
        found = statements[sql] = _Prepared(await connection.prepare(sql), now + lifetime, lifetime)
    return found.statement


def forget(connection: Driver) -> None:
    """Drop the connection's prepared statements (after an error: one may be stale, as after
    a migration changed a table)."""
    _PREPARED.pop(connection, None)


async def fetch(connection: Driver, statement: DriverStatement, values: Mapping[str, Any]) -> Any:
    """The rows `statement` returns for `values` (asyncpg records)."""
    sql, args = statement.sql_and_args(values)
    return await (await prepared(connection, sql)).fetch(*args)


async def fetch_pooled(
    pool: LendingPool, statement: DriverStatement, values: Mapping[str, Any]
) -> Any:
    """`fetch` on a connection of the read pool (`ReadPool`), lent for this one statement: the
    statement is asyncpg's own, kept in each connection's cache by its SQL (prepared once a
    connection too) and prepared again at its age (`READ_POOL_REPLAN_SECONDS`)."""
    sql, args = statement.sql_and_args(values)
    return await pool.fetch(sql, *args)


async def fetchrow(
    connection: Driver, statement: DriverStatement, values: Mapping[str, Any]
) -> Any:
    sql, args = statement.sql_and_args(values)
    return await (await prepared(connection, sql)).fetchrow(*args)


async def execute(connection: Driver, statement: DriverStatement, values: Mapping[str, Any]) -> str:
    """Run `statement`; its status (`UPDATE 1`)."""
    sql, args = statement.sql_and_args(values)
    ready = await prepared(connection, sql)
    await ready.fetch(*args)
    status: str = ready.get_statusmsg()
    return status


async def execute_many(
    connection: Driver, statement: DriverStatement, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run `statement` once per row (a pipeline: one round trip)."""
    sql, args = statement.many(rows)
    await (await prepared(connection, sql)).executemany(args)


@functools.cache
def setting(statement: Any, columns: tuple[str, ...]) -> DriverStatement:
    """An INSERT or UPDATE setting these columns from parameters of their names, for the
    driver; compiled at its first use, since which columns a statement sets can vary (a
    success sets others than a failure)."""
    return DriverStatement(statement.values({column: bindparam(column) for column in columns}))


# A pool of asyncpg connections of its own, for the lone statements sent most (a poll's read, a
# worker's claim): a connection from asyncpg's pool cost a quarter of one from SQLAlchemy's
# (measured: a read 56 against 133 µs of the gateway's CPU, issue 20), and this one less again.
# Its connections only ever run a lone statement outside a transaction: nothing to reset.
# Its connections add to the engine's: at most this many a process.
READ_POOL_SIZE = 10
# Its statements are asyncpg's own, prepared again once this old (see `REPLAN_FIRST_SECONDS`;
# asyncpg's cache keeps one age for all).
READ_POOL_REPLAN_SECONDS = 20.0
# An idle connection beyond the last is closed once it has not been lent for this long (seen to
# as connections come back), as asyncpg's pool did.
READ_POOL_IDLE_SECONDS = 300.0
# A connection closed politely (a Terminate message) within this, or dropped.
READ_POOL_CLOSE_SECONDS = 5.0
# After the pool could not be made (the database is out), this long before trying again; the
# reads meanwhile go through SQLAlchemy, which answers the outage.
READ_POOL_RETRY_SECONDS = 5.0
# Its commits are not waited for on disk (`synchronous_commit = off`): the pool's only writer is
# the worker's plain claim (`claims.CLAIM_PLAIN`; a poll's read writes nothing), and a claim is
# the one commit of a task's three (submit, claim, finish) that a crash may take back: a claim
# lost with PostgreSQL leaves the task as it was before it (PENDING, or RUNNING under the lease
# that ran out), to be claimed and run again, as when the worker dies (the service runs a task
# at least once). Its worker's finish is fenced on (worker_id, attempts, RUNNING) and so writes
# nothing after a lost claim, unless that same worker claimed it again meanwhile: then the two
# runs share one claim and the first finish is the only one written. And a finish is never
# durable without its claim: its own commit waits for the WAL up to it, which holds the claim's.
# What it saves: one WAL flush a task (2-3 ms of a task's latency on a disk where one costs that).
# Nothing that must outlive a crash may be written through this pool.
READ_POOL_SETTINGS = {"synchronous_commit": "off"}
# What SQLAlchemy's dialect reads for itself from the engine's connect arguments.
_SQLALCHEMY_ONLY = (
    "async_creator_fn",
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
)


async def _json_codecs(connection: Driver) -> None:
    """JSON and JSONB in and out as SQLAlchemy's asyncpg dialect sets them on its connections
    (`setup_asyncpg_json_codec`), so that a row reads the same from either pool."""
    await connection.set_type_codec(
        "json", encoder=str.encode, decoder=lambda raw: json.loads(raw.decode()),
        schema="pg_catalog", format="binary",
    )  # fmt: skip
    await connection.set_type_codec(
        "jsonb", encoder=lambda text: b"\x01" + text.encode(),
        decoder=lambda raw: json.loads(raw[1:].decode()), schema="pg_catalog", format="binary",
    )  # fmt: skip


class LendingPool:
    """Up to `size` asyncpg connections, each lent for one statement (`fetch`, `fetchrow`): the
    idle ones in a stack, the last given back lent first (so that the others age out), callers
    waiting in turn while all are lent. A connection whose statement failed or was cancelled is
    closed, never lent again: its state is unknown (an outage, a cancellation in flight). What
    asyncpg's own pool does around each statement (a holder and a proxy, a reset, a timer rearmed,
    a queue) cost as much CPU as the statement itself (measured: 46 against 23 µs a pooled
    `fetchrow`); here it is a pop and an append."""

    def __init__(self, connect: Callable[[], Awaitable[Driver]], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: collections.deque[tuple[Driver, float]] = collections.deque()  # and when
        self._open = 0  # idle, lent, or being made
        self._waiters: collections.deque[asyncio.Future[Driver | None]] = collections.deque()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def fetch(self, sql: str, *args: Any) -> Any:
        return await self._on_lent(lambda connection: connection.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._on_lent(lambda connection: connection.fetchrow(sql, *args))

    async def _on_lent(self, statement: Callable[[Driver], Awaitable[Any]]) -> Any:
        """`statement` on a lent connection, given back after it, or dropped if it failed."""
        connection = await self._lend()
        try:
            answer = await statement(connection)
        except BaseException:
            self._drop(connection)
            raise
        self._give_back(connection)
        return answer

    async def open(self) -> None:
        """Make one connection now and keep it idle: the pool's first use fails here when the
        database is out."""
        self._give_back(await self._lend())

    async def _lend(self) -> Driver:
        while self._idle:
            connection = self._idle.pop()[0]
            if not connection.is_closed():
                return connection
            self._open -= 1  # lost while idle (the server restarted): its place is free
        if self._closed:
            raise asyncpg.InterfaceError("the read pool is closed")
        if self._open < self._size:
            self._open += 1
        else:
            waiter: asyncio.Future[Driver | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed something as it was cancelled
                    self._pass_on(waiter.result())
                raise
            if handed is not None:
                return handed
            # None: a connection was dropped, and its place handed to this caller to fill.
        try:
            return await self._connect()
        except BaseException:
            self._pass_on(None)
            raise

    def _give_back(self, connection: Driver) -> None:
        if self._closed or connection.is_closed():
            self._drop(connection)
            return
        self._pass_on(connection)

    def _drop(self, connection: Driver) -> None:
        connection.terminate()
        self._pass_on(None)

    def _pass_on(self, connection: Driver | None) -> None:
        """Hand a connection, or the place of one that is gone (None), to the first caller
        waiting; without one, keep the connection idle, or free the place."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is None:
            self._open -= 1
            return
        now = time.monotonic()
        self._idle.append((connection, now))
        oldest, since = self._idle[0]
        if len(self._idle) > 1 and now - since > READ_POOL_IDLE_SECONDS:
            self._idle.popleft()
            self._open -= 1
            self._close_later(oldest)

    def _close_later(self, connection: Driver) -> None:
        closing = asyncio.create_task(_close_quietly(connection))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close the idle connections, and each lent one as it comes back."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the read pool is closed"))
        while self._idle:
            connection, _since = self._idle.pop()
            self._open -= 1
            await _close_quietly(connection)
        if self._closing:
            await asyncio.wait(self._closing)

    def terminate(self) -> None:
        """Close the idle connections without awaiting (a pool of another loop)."""
        self._closed = True
        while self._idle:
            self._idle.pop()[0].terminate()


async def _close_quietly(connection: Driver) -> None:
    """Close a connection politely, or drop it (it is of no more use either way)."""
    try:
        await connection.close(timeout=READ_POOL_CLOSE_SECONDS)
    except Exception:
        connection.terminate()


class ReadPool:
    """The read pool (`LendingPool`) on the engine's database, made at its first use on an
    event loop (asyncpg's connections serve one loop) and closed by `close` (the database's
    `dispose`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        _args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._connect = {k: v for k, v in kwargs.items() if k not in _SQLALCHEMY_ONLY}
        self._connect["server_settings"] = {
            **self._connect.get("server_settings", {}),
            **READ_POOL_SETTINGS,
        }
        self._pool: LendingPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed_at = -READ_POOL_RETRY_SECONDS
        self._making = asyncio.Lock()

    async def get(self) -> LendingPool | None:
        """The pool for the running loop; None while it cannot be made (the caller reads through
        SQLAlchemy instead)."""
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if time.monotonic() - self._failed_at < READ_POOL_RETRY_SECONDS:
            return None
        if self._making.locked():
            return None  # another read is making it; this one need not wait
        async with self._making:
            if self._pool is not None and self._loop is not loop:
                self._pool.terminate()  # made on another loop: it cannot be awaited on this one
                self._pool = None
            pool = LendingPool(self._connection, READ_POOL_SIZE)
            try:
                await pool.open()
            except Exception:
                self._failed_at = time.monotonic()
                return None
            self._pool, self._loop = pool, loop
            return pool

    async def _connection(self) -> Driver:
        connection = await asyncpg.connect(
            max_cached_statement_lifetime=READ_POOL_REPLAN_SECONDS, **self._connect
        )
        try:
            await _json_codecs(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if self._loop is asyncio.get_running_loop():
            await pool.close()
        else:
            pool.terminate()
