"""The event-log contract, on every backend: in-process, Redis Streams and Redis Streams on a
cluster. What a worker writes, a reader gets back in order, and a reader that reconnects after
an id gets exactly what came after it. Writes are fenced by the claim they come from: a worker
that lost the task (taken over, or retried since) writes nothing more into its log."""

from __future__ import annotations

import asyncio

from aitasks.events.base import DELTA, DONE, STATUS, EventLog, Fence
from aitasks.events.memory import InProcessEventLog


async def test_events_are_read_back_in_the_order_written(events: EventLog) -> None:
    first = await events.append("t1", STATUS, {"status": "RUNNING", "attempt": 1})
    await events.append_many(
        "t1", [(DELTA, {"delta": "Grüße, "}), (DELTA, {"delta": "世界"})], first=False
    )
    await events.append_many("t1", [(STATUS, {"status": "SUCCESS"}), (DONE, {})], first=False)
    read = await events.read("t1", after=None, wait_seconds=0)
    assert [(e.type, e.data) for e in read] == [
        (STATUS, {"status": "RUNNING", "attempt": 1}),
        (DELTA, {"delta": "Grüße, "}),
        (DELTA, {"delta": "世界"}),
        (STATUS, {"status": "SUCCESS"}),
        (DONE, {}),
    ]
    assert read[0].id == first
    assert len({e.id for e in read}) == 5


async def test_a_reader_resumes_after_the_last_id_it_saw(events: EventLog) -> None:
    await events.append_many("t1", [(STATUS, {"status": "RUNNING"}), (DELTA, {"delta": "a"})])
    seen = await events.read("t1", after=None, wait_seconds=0)
    await events.append_many("t1", [(DELTA, {"delta": "b"}), (DONE, {})], first=False)
    rest = await events.read("t1", after=seen[-1].id, wait_seconds=0)
    assert [e.data for e in rest] == [{"delta": "b"}, {}]
    assert await events.read("t1", after=rest[-1].id, wait_seconds=0) == []
    everything = await events.read("t1", after=None, wait_seconds=0)
    assert [e.id for e in everything] == [e.id for e in seen + rest]


async def test_a_read_waits_for_the_next_event(events: EventLog) -> None:
    reading = asyncio.create_task(events.read("t1", after=None, wait_seconds=5))
    await asyncio.sleep(0.1)
    assert not reading.done()
    await events.append("t1", DELTA, {"delta": "late"})
    got = await asyncio.wait_for(reading, 2)
    assert [e.data for e in got] == [{"delta": "late"}]


async def test_many_readers_wait_at_once(events: EventLog) -> None:
    """A gateway holds one blocking read per waiting client: 300 at once all get their events
    (a pool bounded at redis-py's default of 100 refused the rest with "Too many connections")."""
    readers = [events.read(f"t{n}", after=None, wait_seconds=2) for n in range(300)]
    waiting = asyncio.gather(*readers)
    await asyncio.sleep(0.3)
    await events.append_many("t7", [(STATUS, {"status": "SUCCESS"}), (DONE, {})])
    read = await waiting
    assert [e.type for e in read[7]] == [STATUS, DONE]
    assert sum(len(r) for r in read) == 2


async def test_a_read_with_nothing_new_ends_empty_after_its_wait(events: EventLog) -> None:
    assert await events.read("nobody", after=None, wait_seconds=0) == []
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await events.read("nobody", after=None, wait_seconds=0.2) == []
    assert loop.time() - started >= 0.15


async def test_each_task_has_a_log_of_its_own(events: EventLog) -> None:
    await events.append("t1", DELTA, {"delta": "one"})
    await events.append("t2", DELTA, {"delta": "two"})
    assert [e.data for e in await events.read("t1", after=None, wait_seconds=0)] == [
        {"delta": "one"}
    ]
    assert [e.data for e in await events.read("t2", after=None, wait_seconds=0)] == [
        {"delta": "two"}
    ]


async def test_a_reset_log_starts_again(events: EventLog) -> None:
    await events.append_many("t1", [(STATUS, {"status": "RUNNING"}), (DELTA, {"delta": "old"})])
    await events.reset("t1")
    assert await events.read("t1", after=None, wait_seconds=0) == []
    await events.append("t1", STATUS, {"status": "RUNNING", "attempt": 2})
    read = await events.read("t1", after=None, wait_seconds=0)
    assert [e.data for e in read] == [{"status": "RUNNING", "attempt": 2}]
    await events.append("t2", DELTA, {"delta": "kept"})
    await events.reset("t1")
    assert len(await events.read("t2", after=None, wait_seconds=0)) == 1


def _position(event_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in event_id.split("-"))


async def test_each_log_numbers_its_own_events(events: EventLog) -> None:
    for n in range(3):
        await events.append("busy", DELTA, {"delta": str(n)})
    await events.append("new", STATUS, {"status": "PENDING"})
    await events.append_many("new", [(DELTA, {"delta": "a"}), (DONE, {})], first=False)
    ids = [e.id for e in await events.read("new", after=None, wait_seconds=0)]
    assert [_position(i) for i in ids] == sorted({_position(i) for i in ids})  # growing
    if isinstance(events, InProcessEventLog):
        assert ids == ["1", "2", "3"]  # as the README shows, whatever other tasks logged
    # What is after an id is read from that id, on any log.
    rest = await events.read("new", after=ids[0], wait_seconds=0)
    assert [e.id for e in rest] == ids[1:]


async def test_an_id_past_the_end_reads_nothing_and_last_is_the_newest_event(
    events: EventLog,
) -> None:
    assert await events.last("t1") is None
    await events.append_many("t1", [(STATUS, {"status": "RUNNING"}), (DONE, {})])
    read = await events.read("t1", after=None, wait_seconds=0)
    newest = await events.last("t1")
    assert newest is not None and newest == read[-1] and newest.type == DONE
    for past in (read[-1].id, "18446744073709551615-18446744073709551615", "99999999999999"):
        assert await events.read("t1", after=past, wait_seconds=0) == []


async def test_a_write_from_a_claim_taken_over_is_refused(events: EventLog) -> None:
    zombie, successor = Fence(run=1000, attempt=1), Fence(run=1000, attempt=2)
    await events.append("t1", STATUS, {"status": "PENDING"})
    assert await events.append_many(
        "t1", [(STATUS, {"status": "RUNNING", "attempt": 1}), (DELTA, {"delta": "old "})],
        first=False, fence=zombie,
    )  # fmt: skip
    assert await events.append_many(
        "t1", [(STATUS, {"status": "RUNNING", "attempt": 2})], first=False, fence=successor
    )
    # The first worker, frozen past its lease, wakes and goes on writing: refused.
    assert await events.append_many("t1", [(DELTA, {"delta": "zombie"})], fence=zombie) == []
    assert await events.append_many("t1", [(DELTA, {"delta": "new"})], fence=successor)
    # The gateway's own events carry no fence and go in.
    assert await events.append("t1", STATUS, {"status": "CANCELLED"}) is not None
    assert await events.append_many("t1", [(DELTA, {"delta": "zombie"})], fence=zombie) == []
    read = await events.read("t1", after=None, wait_seconds=0)
    assert [e.data for e in read] == [
        {"status": "PENDING"},
        {"status": "RUNNING", "attempt": 1},
        {"delta": "old "},
        {"status": "RUNNING", "attempt": 2},
        {"delta": "new"},
        {"status": "CANCELLED"},
    ]


async def test_two_writers_at_once_leave_only_the_newer_claims_text(events: EventLog) -> None:
    zombie, successor = Fence(run=7, attempt=3), Fence(run=7, attempt=4)

    async def write(fence: Fence, text: str) -> None:
        for n in range(20):
            await events.append_many("t1", [(DELTA, {"delta": f"{text}{n} "})], fence=fence)
            await asyncio.sleep(0)

    await events.append_many("t1", [(STATUS, {"status": "RUNNING", "attempt": 3})], fence=zombie)
    await asyncio.gather(
        write(zombie, "z"),
        events.append_many("t1", [(STATUS, {"status": "RUNNING", "attempt": 4})], fence=successor),
        write(successor, "s"),
    )
    read = await events.read("t1", after=None, wait_seconds=0)
    newest_running = max(i for i, e in enumerate(read) if e.data.get("attempt") == 4)
    after_it = [e.data["delta"] for e in read[newest_running:] if e.type == DELTA]
    assert after_it and all(d.startswith("s") for d in after_it)


async def test_after_done_nothing_goes_in_and_a_retry_shuts_out_the_old_run(
    events: EventLog,
) -> None:
    old_run, new_run = Fence(run=1000, attempt=2), Fence(run=5000, attempt=1)
    await events.append_many("t1", [(STATUS, {"status": "RUNNING", "attempt": 2})], fence=old_run)
    await events.append_many("t1", [(STATUS, {"status": "FAILED"}), (DONE, {})], fence=old_run)
    assert await events.append("t1", DELTA, {"delta": "late"}) is None
    assert await events.append_many("t1", [(DELTA, {"delta": "late"})], fence=old_run) == []
    await events.reset("t1")  # retried: it runs again from the start
    assert await events.append("t1", STATUS, {"status": "PENDING"}) is not None
    # A worker still holding the old run (frozen since) cannot write into the new one.
    assert await events.append_many("t1", [(DELTA, {"delta": "zombie"})], fence=old_run) == []
    assert await events.append_many(
        "t1", [(STATUS, {"status": "RUNNING", "attempt": 1})], fence=new_run
    )
    read = await events.read("t1", after=None, wait_seconds=0)
    assert [e.data for e in read] == [{"status": "PENDING"}, {"status": "RUNNING", "attempt": 1}]


async def test_a_read_until_a_type_waits_past_the_others_and_hands_all_of_them(
    events: EventLog,
) -> None:
    """`Prefer: wait` waits for `done` alone: the statuses and pieces before it do not end its
    read, and it gets them all with the `done`."""
    await events.append("t1", STATUS, {"status": "PENDING"})
    reading = asyncio.create_task(events.read_until("t1", DONE, after=None, wait_seconds=5))
    await asyncio.sleep(0.1)
    await events.append_many("t1", [(STATUS, {"status": "RUNNING"})], first=False)
    await asyncio.sleep(0.1)
    await events.append_many("t1", [(DELTA, {"delta": "a"})], first=False)
    await asyncio.sleep(0.1)
    assert not reading.done()
    await events.append_many("t1", [(STATUS, {"status": "SUCCESS"}), (DONE, {})], first=False)
    got = await asyncio.wait_for(reading, 2)
    assert [e.type for e in got] == [STATUS, STATUS, DELTA, STATUS, DONE]
    assert got == await events.read("t1", after=None, wait_seconds=0)


async def test_a_read_until_a_type_that_never_comes_ends_with_what_came(
    events: EventLog,
) -> None:
    first = await events.append("t1", STATUS, {"status": "PENDING"})
    reading = asyncio.create_task(events.read_until("t1", DONE, after=first, wait_seconds=0.5))
    await asyncio.sleep(0.1)
    await events.append_many("t1", [(STATUS, {"status": "RUNNING"})], first=False)
    got = await asyncio.wait_for(reading, 3)
    assert [e.data for e in got] == [{"status": "RUNNING"}]
    assert await events.read_until("t2", DONE, after=None, wait_seconds=0.2) == []
