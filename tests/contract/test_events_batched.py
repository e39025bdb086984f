"""Appends of several tasks at once (`append_batch`, one pipeline on Redis), on every backend:
each append gets what it would get alone (its ids, or refused by its own log's fence or `done`),
and a Redis that lost its scripts (restarted) has them loaded again with nothing written twice."""

from __future__ import annotations

from aitasks.events.base import DELTA, DONE, STATUS, Append, EventLog, Fence
from aitasks.events.redis import RedisEventLog


async def test_a_batch_of_appends_is_each_its_own(events: EventLog) -> None:
    await events.append_many("ended", [(STATUS, {"status": "SUCCESS"}), (DONE, {})])
    await events.append_many("newer", [(STATUS, {"status": "RUNNING"})], fence=Fence(1, 2))
    results = await events.append_batch(
        [
            Append(
                "a", [(STATUS, {"status": "RUNNING"}), (DELTA, {"delta": "hi"})], True, Fence(1, 1)
            ),
            Append("ended", [(DELTA, {"delta": "late"})], False, Fence(1, 1)),
            Append("newer", [(DELTA, {"delta": "stale"})], False, Fence(1, 1)),
            Append("b", [(STATUS, {"status": "SUCCESS"}), (DONE, {})], True, Fence(1, 1)),
        ]
    )
    assert [len(r) if isinstance(r, list) else r for r in results] == [2, 0, 0, 2]
    for task_id, types in (("a", [STATUS, DELTA]), ("ended", [STATUS, DONE]),
                           ("newer", [STATUS]), ("b", [STATUS, DONE])):  # fmt: skip
        read = await events.read(task_id, after=None, wait_seconds=0)
        assert [e.type for e in read] == types


async def test_appends_after_redis_lost_its_scripts_are_written_once(events: EventLog) -> None:
    if isinstance(events, RedisEventLog):
        await events.redis.script_flush()  # what a restarted Redis has
    results = await events.append_batch(
        [Append(f"t{i}", [(STATUS, {"status": "RUNNING"})]) for i in range(3)]
    )
    assert all(isinstance(r, list) and len(r) == 1 for r in results)
    for i in range(3):
        assert len(await events.read(f"t{i}", after=None, wait_seconds=0)) == 1


async def test_a_lone_append_gets_what_it_would_get_alone(events: EventLog) -> None:
    # One append in a batch goes as one script call, not a pipeline of one: refused by a newer
    # fence as alone, and written once after Redis lost its scripts.
    await events.append_many("newer", [(STATUS, {"status": "RUNNING"})], fence=Fence(1, 2))
    stale = Append("newer", [(DELTA, {"delta": "stale"})], False, Fence(1, 1))
    assert await events.append_batch([stale]) == [[]]
    if isinstance(events, RedisEventLog):
        await events.redis.script_flush()
    written = await events.append_batch(
        [Append("a", [(DELTA, {"delta": "hi"})], True, Fence(1, 1))]
    )
    assert isinstance(written[0], list) and len(written[0]) == 1
    read = await events.read("a", after=None, wait_seconds=0)
    assert [e.data for e in read] == [{"delta": "hi"}]
