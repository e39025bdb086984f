"""The read pool's own lending of asyncpg connections (`driver.LendingPool`, under
`driver.ReadPool`) on a real PostgreSQL: at most its size open, callers waiting in turn, a
connection whose statement failed or was cancelled never lent again, closed on `close`; its
connections' settings (commits not waited for on disk, statements prepared again at their age)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from aitasks.config import async_database_url
from aitasks.store import driver
from aitasks.store.database import Database


@pytest.fixture
async def read_pool(postgres_url: str) -> AsyncIterator[driver.ReadPool]:
    database = Database(async_database_url(postgres_url))
    assert database.read_pool is not None
    yield database.read_pool
    await database.dispose()


async def backends(pool: driver.LendingPool) -> set[int]:
    """The server processes of this database's connections, seen from one of the pool's."""
    rows = await pool.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return {row["pid"] for row in rows}


async def test_callers_wait_in_turn_for_at_most_its_size(
    read_pool: driver.ReadPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "READ_POOL_SIZE", 2)
    pool = await read_pool.get()
    assert pool is not None
    seen: set[int] = set()

    async def one(n: int) -> None:
        row = await pool.fetchrow("SELECT pg_backend_pid() AS pid, pg_sleep(0.1), $1::int AS n", n)
        assert row["n"] == n
        seen.add(row["pid"])

    await asyncio.gather(*(one(n) for n in range(8)))
    assert len(seen) == 2
    assert len(await backends(pool)) == 2


async def test_a_broken_or_cancelled_connection_is_dropped_not_lent_again(
    read_pool: driver.ReadPool, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "READ_POOL_SIZE", 1)
    pool = await read_pool.get()
    assert pool is not None
    first = (await pool.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"]
    admin = await asyncpg.connect(postgres_url)
    try:
        # Lost while idle: not lent, a new one made in its place.
        await admin.execute("SELECT pg_terminate_backend($1)", first)
        await asyncio.sleep(0.3)
        second = (await pool.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"]
        assert second != first
        # Lost while lent: its statement fails, and it is dropped.
        lent = asyncio.create_task(pool.fetch("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.2)
        await admin.execute("SELECT pg_terminate_backend($1)", second)
        with pytest.raises(Exception):  # noqa: B017  # whichever asyncpg raises there
            await asyncio.wait_for(lent, 5)
    finally:
        await admin.close()
    after = (await pool.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"]
    assert after not in (first, second)

    sleeping = asyncio.create_task(pool.fetch("SELECT pg_sleep(5)"))
    waiting = asyncio.create_task(pool.fetchrow("SELECT pg_backend_pid() AS pid"))
    await asyncio.sleep(0.2)
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping
    # The waiter got the cancelled one's place, on a connection of its own.
    third = (await asyncio.wait_for(waiting, 5))["pid"]
    assert third not in (first, second, after)
    # And only that one is lent from then on (the dropped one's server process ends with its
    # statement: it notices the closed socket only then).
    assert {(await pool.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"] for _ in range(3)} == {
        third
    }


async def test_a_waiter_cancelled_passes_on_what_it_was_handed(
    read_pool: driver.ReadPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "READ_POOL_SIZE", 1)
    pool = await read_pool.get()
    assert pool is not None
    busy = asyncio.create_task(pool.fetch("SELECT pg_sleep(0.2)"))
    await asyncio.sleep(0.05)
    gave_up = asyncio.create_task(pool.fetch("SELECT 1"))
    later = asyncio.create_task(pool.fetchrow("SELECT 2 AS n"))
    await asyncio.sleep(0.05)
    gave_up.cancel()
    await busy
    assert (await asyncio.wait_for(later, 5))["n"] == 2
    assert gave_up.cancelled()


async def test_its_connections_settings(read_pool: driver.ReadPool) -> None:
    pool = await read_pool.get()
    assert pool is not None
    # The worker's claim is its only write, and need not wait for the disk (`READ_POOL_SETTINGS`).
    assert (await pool.fetchrow("SHOW synchronous_commit"))[0] == "off"
    # JSON comes back as values, as SQLAlchemy's connections read it.
    assert (await pool.fetchrow("""SELECT '{"a": [1]}'::jsonb AS j"""))["j"] == {"a": [1]}


async def test_close_closes_its_connections(read_pool: driver.ReadPool, postgres_url: str) -> None:
    pool = await read_pool.get()
    assert pool is not None
    await asyncio.gather(*(pool.fetch("SELECT pg_sleep(0.05)") for _ in range(4)))
    await read_pool.close()
    admin = await asyncpg.connect(postgres_url)
    try:
        others = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert others == 0
    with pytest.raises(asyncpg.InterfaceError):
        await pool.fetch("SELECT 1")
