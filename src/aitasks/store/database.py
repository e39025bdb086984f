"""The engine and sessions, for PostgreSQL (asyncpg) and the embedded SQLite file (aiosqlite)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, InvalidatePoolError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from aitasks.errors import DatabaseUnavailable, ValueRefused
from aitasks.store.driver import ReadPool

# A pooled connection idle at least this long is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 2.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; busy_timeout makes a writer wait, not fail, when
    # another process (a second `aitasks` command on the same file) holds the write lock.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _make_private_file(path: Path) -> None:
    """Create the SQLite file's folder (0700) and the file itself (0600, empty: SQLite takes an
    empty file as a new database) before SQLite opens it, so that neither is ever readable by
    other users: the file holds webhook and file-link secrets. SQLite gives its `-wal` and `-shm`
    files the database file's mode. A folder or file that exists already keeps its mode (the
    operator's choice). The umask is narrowed only while these are made."""
    previous = os.umask(0o077)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        os.close(descriptor)
    finally:
        os.umask(previous)


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """An async engine for `url`; SQLite gets its folder and file created (private) and its
    pragmas set."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _make_private_file(Path(parsed.database))
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No overflow: a connection opened past the pool is closed again when returned, so a burst
    # above the pool's size forked a PostgreSQL backend per request (measured: 19 tuples of
    # catalogue reads per GET at concurrency 50, 2 without). Past the pool, callers queue.
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0)
    _ping_after_idle(engine)
    return engine


def _ping_after_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only when it has sat idle for a while.

    A restarted PostgreSQL leaves the pool's idle connections dead; pinging at every checkout
    (`pool_pre_ping`) would find them but costs a round trip per request. A connection in steady
    use does not need it: should it break, the failing statement invalidates the whole pool.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from_now(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_when_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool drops this connection and every other as old, and connects anew.
            raise InvalidatePoolError(f"idle connection is dead: {exc}") from exc


class Database:
    """An engine and its session factory; one per process."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # For a lone read: no BEGIN and ROLLBACK around it, two round trips fewer.
        self.reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # PostgreSQL only: asyncpg connections of our own for the hottest lone statements (a
        # poll's read, `tasks.read_task_from`; a worker's plain claim): `driver.ReadPool`.
        self.read_pool = None if self.is_sqlite else ReadPool(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; an outage inside it surfaces as `DatabaseUnavailable`."""
        with database_boundary():
            async with self.sessions() as session:
                yield session

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read statement, outside any transaction."""
        with database_boundary():
            async with self.reads.connect() as connection:
                yield connection

    async def dispose(self) -> None:
        # Closed first, so that nothing holds the database open once this returns (a test's DROP
        # DATABASE right after).
        if self.read_pool is not None:
            await self.read_pool.close()
        await self.engine.dispose()


# SQLSTATEs that say "not now" rather than "never": another try, later or elsewhere, may succeed.
# Class 08 connection exceptions, 53 insufficient resources; 57P01-57P03 admin / crash shutdown
# and "cannot connect now" (a restart in progress); 25006 a read-only transaction (a standby, or
# default_transaction_read_only during a fail-over); 40001 / 40P01 serialization failure and
# deadlock, which the server itself says to retry.
TRANSIENT_SQLSTATE_CLASSES = ("08", "53")
TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "25006", "40001", "40P01"})


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE the server answered with, or "" (SQLite, or no answer at all)."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or ""
    return str(code)


# What the drivers and the pool raise: every error the boundary below looks at. A surface that
# catches errors escaping outside a session registers its handler for these classes.
DRIVER_ERRORS: tuple[type[Exception], ...] = (OSError, TimeoutError, PoolTimeout, DBAPIError)

# What a client is told when the database is out; the driver's words go to the log, not to it.
UNAVAILABLE_MESSAGE = "the database is unavailable; retry shortly"


def _is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot serve now, rather than that a query was wrong.

    A refused or cut connection surfaces as a bare `OSError` from the driver at connect time, as
    SQLAlchemy's `OperationalError` / `InterfaceError` (or an invalidated connection) later, and a
    server that is shutting down, starting or read-only answers with one of the SQLSTATEs above
    wrapped in a plain `DBAPIError`.
    """
    if isinstance(exc, OSError | TimeoutError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        code = sqlstate(exc)
        return (
            exc.connection_invalidated
            or isinstance(exc, OperationalError | InterfaceError)
            or isinstance(exc.orig, OSError)
            or code in TRANSIENT_SQLSTATES
            or code.startswith(TRANSIENT_SQLSTATE_CLASSES)
        )
    return False


def _is_bad_data(exc: BaseException) -> bool:
    """Whether the database refused a value (SQLSTATE class 22: a NUL in text, a date out of
    range, a string too long): the request's fault, not the server's."""
    return isinstance(exc, DBAPIError) and sqlstate(exc).startswith("22")


def translated(exc: BaseException) -> BaseException:
    """What a driver's error means to the service: `DatabaseUnavailable` for an outage,
    `ValueRefused` for a value the database refused, else `exc` itself (a bug, or a constraint
    its caller handles). The one table both the boundary below and the HTTP surfaces' handlers
    (for errors that escape outside a session) go by, so they map types, not predicates."""
    if _is_unavailable(exc):
        return DatabaseUnavailable(UNAVAILABLE_MESSAGE)
    if _is_bad_data(exc):
        return ValueRefused()
    return exc


@contextmanager
def database_boundary() -> Iterator[None]:
    """The one place where a driver's outage becomes `DatabaseUnavailable`; anything else (a
    constraint, a bad statement, a refused value) passes through as it is, for the caller that
    knows what it means (the HTTP handlers translate a refused value with `translated`)."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        error = translated(exc)
        if not isinstance(error, DatabaseUnavailable):
            raise
        raise error from exc
