"""The event-log contract, on every backend: in-process, Redis Streams and Redis Streams on a
cluster. What a worker writes, a reader gets back in order, and a reader that reconnects after
an id gets exactly what came after it."""

from __future__ import annotations

import asyncio

from aitasks.events.base import DELTA, DONE, STATUS, EventLog


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
