"""The one XREAD a gateway shares among its waiting readers on a single Redis
(`events.shared_read`): each waiter gets exactly what its own XREAD would have, however many wait
and whenever they come; they hold one connection between them; one that gives up is forgotten; and
a shared read cut off fails every waiter as an outage, after which reads go on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from aitasks.errors import RedisUnavailable
from aitasks.events.base import DELTA, DONE, STATUS
from aitasks.events.redis import RedisEventLog
from aitasks.events.shared_read import SharedStreamReader, stream_position
from tests.support.services import REDIS_URL


@pytest.fixture
async def named() -> AsyncIterator[tuple[RedisEventLog, str]]:
    """An event log on the test Redis whose connections carry a name of their own, to count."""
    name = f"shared-read-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(REDIS_URL, decode_responses=True, client_name=name)
    log = RedisEventLog(client, prefix=f"test:{name}")
    yield log, name
    await log.close()


async def connections_named(name: str) -> int:
    async with Redis.from_url(REDIS_URL, decode_responses=True) as admin:
        return sum(1 for c in await admin.client_list() if c.get("name") == name)


def shared(log: RedisEventLog) -> SharedStreamReader:
    assert log._shared is not None
    return log._shared


def test_an_id_is_placed_as_xread_reads_it() -> None:
    assert stream_position("0-0") == (0, 0)
    assert stream_position("1764383529123-7") == (1764383529123, 7)
    assert stream_position("12") == (12, 0)
    top = "18446744073709551615"
    assert stream_position(f"{top}-{top}") == (2**64 - 1, 2**64 - 1)
    # What Redis refuses is left to a reader's own XREAD (which answers it with nothing).
    for refused in ("", "-", "5-", "-5", "a-1", "1-b", "18446744073709551616", "١٢", "1-2-3"):
        assert stream_position(refused) is None, refused


async def test_many_waiters_share_one_connection(named: tuple[RedisEventLog, str]) -> None:
    log, name = named
    await log.append("t0", STATUS, {"status": "PENDING"})  # connected, before the crowd
    readers = [
        asyncio.create_task(log.read(f"t{n}", after=None, wait_seconds=5)) for n in range(1, 201)
    ]
    await asyncio.sleep(0.5)
    assert shared(log).waiting == 200
    # The shared XREAD's and the one the append used (and at most one waking the XREAD).
    assert await connections_named(name) <= 3
    await log.append_many("t7", [(STATUS, {"status": "SUCCESS"}), (DONE, {})])
    assert [e.type for e in await asyncio.wait_for(readers[6], 2)] == [STATUS, DONE]
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    assert shared(log).waiting == 0  # gone away, forgotten


async def test_each_waiter_gets_what_came_after_its_own_id(
    named: tuple[RedisEventLog, str],
) -> None:
    log, _ = named
    ids = await log.append_many("t1", [(DELTA, {"delta": str(n)}) for n in range(3)])
    behind = asyncio.create_task(log.read("t1", after=ids[0], wait_seconds=5))
    level = asyncio.create_task(log.read("t1", after=ids[2], wait_seconds=5))
    assert [e.id for e in await asyncio.wait_for(behind, 2)] == ids[1:]
    await asyncio.sleep(0.2)  # the shared XREAD now blocks from ids[2]
    # One from further back than that XREAD reads, come just as the next events are written: the
    # blocked XREAD may answer them before it is woken, but not to this waiter, who would miss
    # ids[2].
    further_back = asyncio.create_task(log.read("t1", after=ids[1], wait_seconds=5))
    await asyncio.sleep(0)
    later = await log.append_many("t1", [(DELTA, {"delta": "3"}), (DELTA, {"delta": "4"})])
    assert [e.id for e in await asyncio.wait_for(level, 2)] == later
    got = [e.id for e in await asyncio.wait_for(further_back, 2)]
    assert got and got == [ids[2], *later][: len(got)]


async def test_a_waiter_that_comes_while_the_read_blocks_is_not_kept_waiting(
    named: tuple[RedisEventLog, str],
) -> None:
    log, _ = named
    first = asyncio.create_task(log.read("quiet", after=None, wait_seconds=10))
    await asyncio.sleep(0.3)  # blocked on "quiet" alone
    second = asyncio.create_task(log.read("busy", after=None, wait_seconds=10))
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    written = loop.time()
    await log.append("busy", DELTA, {"delta": "now"})
    assert [e.data for e in await asyncio.wait_for(second, 5)] == [{"delta": "now"}]
    assert loop.time() - written < 1  # not at the end of the first one's block
    first.cancel()


async def test_a_shared_read_cut_off_fails_each_waiter_and_reads_go_on(
    named: tuple[RedisEventLog, str],
) -> None:
    log, name = named
    await log.append("t0", STATUS, {"status": "PENDING"})
    readers = [
        asyncio.create_task(log.read(f"t{n}", after=None, wait_seconds=5)) for n in range(1, 4)
    ]
    await asyncio.sleep(0.3)
    async with Redis.from_url(REDIS_URL, decode_responses=True) as admin:
        blocked = [
            c for c in await admin.client_list() if c.get("name") == name and c["cmd"] == "xread"
        ]
        assert len(blocked) == 1
        await admin.client_kill_filter(_id=blocked[0]["id"])  # what a Redis going away does to it
    for outcome in await asyncio.gather(*readers, return_exceptions=True):
        assert isinstance(outcome, RedisUnavailable), outcome
    assert shared(log).waiting == 0
    reading = asyncio.create_task(log.read("t1", after=None, wait_seconds=5))
    await asyncio.sleep(0.1)
    await log.append("t1", DELTA, {"delta": "again"})
    assert [e.data for e in await asyncio.wait_for(reading, 2)] == [{"delta": "again"}]


@pytest.fixture
async def no_client_command() -> AsyncIterator[str]:
    """The URL of a Redis user who may not run CLIENT, as a managed Redis's user may not."""
    user = f"no-client-{uuid.uuid4().hex[:8]}"
    async with Redis.from_url(REDIS_URL) as admin:
        await admin.acl_setuser(
            user, enabled=True, passwords=["+secret"], keys=["*"], channels=["*"],
            commands=["+@all", "-client"],
        )  # fmt: skip
        try:
            yield REDIS_URL.replace("redis://", f"redis://{user}:secret@", 1)
        finally:
            await admin.acl_deluser(user)


async def test_where_redis_refuses_client_each_waiter_reads_alone(
    no_client_command: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = RedisEventLog.from_url(no_client_command, prefix=f"test:{uuid.uuid4().hex[:8]}")
    try:
        reading = asyncio.create_task(log.read("t1", after=None, wait_seconds=5))
        await asyncio.sleep(0.2)
        await log.append("t1", DELTA, {"delta": "one"})
        first = await asyncio.wait_for(reading, 2)
        assert [e.data for e in first] == [{"delta": "one"}]
        assert shared(log).refused and "each waiter reads alone" in caplog.text
        later = asyncio.create_task(log.read("t1", after=first[-1].id, wait_seconds=5))
        await asyncio.sleep(0.2)
        await log.append("t1", DELTA, {"delta": "two"})
        assert [e.data for e in await asyncio.wait_for(later, 2)] == [{"delta": "two"}]
    finally:
        await log.close()


async def test_a_connection_closed_while_nobody_waits_is_replaced_unseen(
    named: tuple[RedisEventLog, str],
) -> None:
    """What a Redis restarted between waits leaves: the shared read's connection closed. The next
    waiter gets its events, not the outage that has passed."""
    log, _ = named
    reading = asyncio.create_task(log.read("t1", after=None, wait_seconds=5))
    await asyncio.sleep(0.2)
    first = await log.append("t1", DELTA, {"delta": "one"})
    await asyncio.wait_for(reading, 2)
    async with Redis.from_url(REDIS_URL, decode_responses=True) as admin:
        await admin.client_kill_filter(_id=shared(log)._client_id)
    await asyncio.sleep(0.1)
    reading = asyncio.create_task(log.read("t1", after=first, wait_seconds=5))
    await asyncio.sleep(0.2)
    await log.append("t1", DELTA, {"delta": "two"})
    assert [e.data for e in await asyncio.wait_for(reading, 2)] == [{"delta": "two"}]


async def test_a_wait_for_done_stays_in_the_shared_read_through_the_events_before_it(
    named: tuple[RedisEventLog, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `Prefer: wait` is handed nothing before `done`: it stays a waiter the next XREAD covers,
    instead of coming back after each status to be taken in again (a CLIENT UNBLOCK each)."""
    log, _ = named
    first = await log.append("t1", STATUS, {"status": "PENDING"})
    reader = shared(log)
    unblocks = 0
    unblock = reader._redis.client_unblock

    async def counted(client_id: int) -> bool:
        nonlocal unblocks
        unblocks += 1
        return await unblock(client_id)

    monkeypatch.setattr(reader._redis, "client_unblock", counted)
    # Another waiter, which keeps the shared XREAD blocked between the events.
    other = asyncio.create_task(log.read("t2", after=None, wait_seconds=5))
    waiting = asyncio.create_task(log.read_until("t1", DONE, after=first, wait_seconds=5))
    await asyncio.sleep(0.2)
    for n in range(5):
        await log.append_many("t1", [(DELTA, {"delta": str(n)})], first=False)
        await asyncio.sleep(0.05)
        assert not waiting.done() and reader.waiting == 2
    await log.append_many("t1", [(DONE, {})], first=False)
    got = await asyncio.wait_for(waiting, 2)
    assert [e.type for e in got] == [DELTA] * 5 + [DONE]
    assert unblocks <= 1  # at most the one that took it in
    other.cancel()
