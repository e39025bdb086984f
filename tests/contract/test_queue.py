"""The queue contract, on Redis Streams and in-process."""

from __future__ import annotations

import asyncio

from aitasks.queue.base import TaskQueue
from aitasks.queue.redis import RedisStreamQueue
from tests.contract.conftest import REDELIVER_AFTER


async def test_a_published_task_is_delivered_once_and_acked(queue: TaskQueue) -> None:
    await queue.publish("chat", "t1")
    first = await queue.receive(["chat", "other"], "c1", count=10, wait_seconds=1)
    assert [(d.queue, d.task_id) for d in first] == [("chat", "t1")]
    assert await queue.receive(["chat"], "c2", count=10, wait_seconds=0.05) == []
    await queue.ack(first[0])
    assert await queue.depth("chat") == 0


async def test_receive_waits_for_a_publish(queue: TaskQueue) -> None:
    receiving = asyncio.create_task(queue.receive(["q"], "c1", count=1, wait_seconds=2))
    await asyncio.sleep(0.1)
    await queue.publish("q", "late")
    assert [d.task_id for d in await receiving] == ["late"]


async def test_only_the_named_queues_are_read(queue: TaskQueue) -> None:
    await queue.publish("sd", "image-task")
    assert await queue.receive(["gemini"], "c1", count=10, wait_seconds=0.05) == []
    assert [d.task_id for d in await queue.receive(["sd"], "c1", count=10, wait_seconds=1)] == [
        "image-task"
    ]


async def test_an_abandoned_delivery_goes_to_another_consumer(queue: TaskQueue) -> None:
    await queue.publish("q", "t1")
    (abandoned,) = await queue.receive(["q"], "dies", count=1, wait_seconds=1)
    await asyncio.sleep(REDELIVER_AFTER * 1.5)
    again = await queue.receive(["q"], "survivor", count=1, wait_seconds=1)
    assert [(d.task_id, d.message_id) for d in again] == [("t1", abandoned.message_id)]


async def test_touching_a_delivery_keeps_it(queue: TaskQueue) -> None:
    await queue.publish("q", "t1")
    (held,) = await queue.receive(["q"], "busy", count=1, wait_seconds=1)
    for _ in range(4):
        await asyncio.sleep(REDELIVER_AFTER / 2)
        await queue.touch(held, "busy")
    assert await queue.receive(["q"], "other", count=1, wait_seconds=0.05) == []


async def test_count_bounds_one_receive(queue: TaskQueue) -> None:
    for i in range(5):
        await queue.publish("q", f"t{i}")
    got = await queue.receive(["q"], "c", count=3, wait_seconds=1)
    assert [d.task_id for d in got] == ["t0", "t1", "t2"]


async def test_redis_queue_recovers_when_its_stream_vanishes(redis_prefix: str) -> None:
    from tests.conftest import REDIS_URL

    queue = RedisStreamQueue.from_url(REDIS_URL, prefix=redis_prefix, redeliver_after=30)
    try:
        await queue.publish("q", "before")
        await queue.receive(["q"], "c", count=1, wait_seconds=1)
        # What a Redis restarted empty looks like to a running worker: no stream, no group.
        await queue.redis.delete(queue._key("q"))
        assert await queue.receive(["q"], "c", count=1, wait_seconds=0.05) == []
        await queue.publish("q", "after")
        assert [d.task_id for d in await queue.receive(["q"], "c", count=1, wait_seconds=1)] == [
            "after"
        ]
    finally:
        await queue.close()


async def test_rate_slots_are_a_sliding_window(queue: TaskQueue) -> None:
    granted = [await queue.rate_slot("rpm:m", 3, 1.0) for _ in range(3)]
    assert granted == [0.0, 0.0, 0.0]
    wait = await queue.rate_slot("rpm:m", 3, 1.0)
    assert 0 < wait <= 1.0
    await asyncio.sleep(wait + 0.05)
    assert await queue.rate_slot("rpm:m", 3, 1.0) == 0.0


async def test_a_rate_limit_is_shared_by_every_worker(redis_prefix: str) -> None:
    from tests.conftest import REDIS_URL

    workers = [
        RedisStreamQueue.from_url(REDIS_URL, prefix=redis_prefix, redeliver_after=30)
        for _ in range(2)
    ]
    try:
        results = [await workers[n % 2].rate_slot("rpm:shared", 4, 60.0) for n in range(6)]
    finally:
        for worker in workers:
            await worker.close()
    assert results[:4] == [0.0] * 4 and all(r > 0 for r in results[4:])
