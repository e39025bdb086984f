"""Publishing committed tasks together (lifecycle/publish_group.py), on every queue: each task
gets its queue entry in its lane, and hears its own failure."""

from __future__ import annotations

import asyncio

import pytest

from aitasks.errors import RedisUnavailable
from aitasks.events.base import STATUS, EventLog
from aitasks.events.redis import RedisEventLog
from aitasks.lifecycle.publish_group import Announcement, announce
from aitasks.priority import Lane, Placement
from aitasks.queue.base import TaskQueue
from aitasks.queue.redis import RedisStreamQueue


async def test_tasks_published_at_once_are_each_queued_in_their_lane(queue: TaskQueue) -> None:
    places = [Placement(Lane.DEFAULT, "a"), Placement(Lane.INTERACTIVE, "b", 2)]
    tasks = [Announcement(f"t{i}", "mock", f"trace-{i}", places[i % 2]) for i in range(30)]
    await asyncio.gather(*(announce(queue, task) for task in tasks))
    assert await queue.queued_task_ids("mock") == {t.task_id for t in tasks}
    assert await queue.depth("mock", [Lane.INTERACTIVE]) == 15
    assert await queue.depth("mock", [Lane.DEFAULT]) == 15
    # Each delivered with the trace it was published with.
    got = await queue.receive(["mock"], "c1", count=30, wait_seconds=1)
    assert len(got) == 30 and all(d.trace == f"trace-{d.task_id[1:]}" for d in got)


async def test_each_task_hears_that_its_queue_cannot_be_reached() -> None:
    unreachable = RedisStreamQueue.from_url(
        "redis://127.0.0.1:1/0", prefix="gone", redeliver_after=1.0
    )
    try:
        tasks = [Announcement(f"t{i}", "mock", None, Placement()) for i in range(5)]
        answers = await asyncio.gather(
            *(announce(unreachable, task) for task in tasks), return_exceptions=True
        )
    finally:
        await unreachable.close()
    assert all(isinstance(a, RedisUnavailable) for a in answers), answers


@pytest.mark.parametrize("count", [1, 450])
async def test_more_tasks_than_a_group_holds_are_all_published(
    count: int, queue: TaskQueue
) -> None:
    tasks = [Announcement(f"n{i}", "mock", None, Placement()) for i in range(count)]
    await asyncio.gather(*(announce(queue, task) for task in tasks))
    assert len(await queue.queued_task_ids("mock")) == count


async def test_tasks_published_at_once_each_start_their_event_log(
    queue: TaskQueue, events: EventLog
) -> None:
    tasks = [Announcement(f"e{i}", "mock", None, Placement(), events) for i in range(30)]
    await asyncio.gather(*(announce(queue, task) for task in tasks))
    assert await queue.queued_task_ids("mock") == {t.task_id for t in tasks}
    for task in tasks:
        logged = await events.read(task.task_id, after=None, wait_seconds=0)
        assert [(e.type, e.data) for e in logged] == [(STATUS, {"status": "PENDING"})]


async def test_each_task_hears_that_its_event_log_cannot_be_reached(queue: TaskQueue) -> None:
    unreachable = RedisEventLog.from_url("redis://127.0.0.1:1/0", prefix="gone")
    try:
        tasks = [Announcement(f"u{i}", "mock", None, Placement(), unreachable) for i in range(5)]
        answers = await asyncio.gather(
            *(announce(queue, task) for task in tasks), return_exceptions=True
        )
    finally:
        await unreachable.close()
    assert all(isinstance(a, RedisUnavailable) for a in answers), answers
    # Its queue entries went all the same: the reconciler finds nothing to publish twice.
    assert await queue.queued_task_ids("mock") == {t.task_id for t in tasks}
