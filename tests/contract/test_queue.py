"""The queue contract, on every backend: in-process, Redis Streams, Redis Streams on a cluster."""

from __future__ import annotations

import asyncio
import time

import pytest

from aitasks.queue.base import RateSlot, TaskQueue
from tests.support.backends import REDELIVER_AFTER


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


async def test_count_bounds_a_receive_across_queues(queue: TaskQueue) -> None:
    queues = ["gemini", "deepseek", "openai"]
    await queue.publish("gemini", "g")
    await queue.publish("deepseek", "d")
    first = await queue.receive(queues, "c", count=1, wait_seconds=1)
    second = await queue.receive(queues, "c", count=5, wait_seconds=1)
    assert len(first) == 1 and {d.task_id for d in first + second} == {"g", "d"}


# Two queues and 4 slots free (as in the issue); three queues and fewer slots free than queues.
@pytest.mark.parametrize(
    ("queues", "count"), [(["gemini", "deepseek"], 4), (["gemini", "deepseek", "openai"], 2)]
)
async def test_count_bounds_a_receive_across_busy_queues_and_nothing_is_lost(
    queue: TaskQueue, queues: list[str], count: int
) -> None:
    # XREADGROUP's COUNT is per stream: one read of busy streams could take the count from each,
    # more than the worker has slots for. Whatever is not taken must still come, and only once.
    published = {f"{q}-{n}" for q in queues for n in range(10)}
    for n in range(10):
        for q in queues:
            await queue.publish(q, f"{q}-{n}")
    delivered: list[str] = []
    async with asyncio.timeout(10):
        while len(delivered) < len(published):
            got = await queue.receive(queues, "c", count=count, wait_seconds=0.2)
            assert len(got) <= count
            delivered += [d.task_id for d in got]
            for d in got:
                await queue.ack(d)
    assert sorted(delivered) == sorted(published)
    # Nothing was left pending to come back later as a second delivery.
    await asyncio.sleep(REDELIVER_AFTER * 1.5)
    assert await queue.receive(queues, "other", count=count, wait_seconds=0.2) == []


async def test_a_wait_with_fewer_slots_than_queues_wakes_for_a_publish(queue: TaskQueue) -> None:
    queues = ["gemini", "deepseek", "openai"]
    receiving = asyncio.create_task(queue.receive(queues, "c", count=1, wait_seconds=5))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await queue.publish("deepseek", "d")
    assert [d.task_id for d in await receiving] == ["d"]
    assert time.monotonic() - started < 1
    await queue.publish("gemini", "g")
    await queue.publish("openai", "o")
    first = await queue.receive(queues, "c", count=1, wait_seconds=1)
    second = await queue.receive(queues, "c", count=1, wait_seconds=1)
    assert len(first) == len(second) == 1
    assert {first[0].task_id, second[0].task_id} == {"g", "o"}


async def test_queues_are_read_together(queue: TaskQueue) -> None:
    # On the cluster, gemini, deepseek and openai hash to slots on different nodes of three.
    queues = ["gemini", "deepseek", "openai"]
    await queue.publish("gemini", "g")
    await queue.publish("deepseek", "d")
    got = await queue.receive(queues, "c", count=5, wait_seconds=1)
    assert {(d.queue, d.task_id) for d in got} == {("gemini", "g"), ("deepseek", "d")}
    # A wait across queues wakes for the one the entry lands on, and takes nothing elsewhere.
    receiving = asyncio.create_task(queue.receive(queues, "c", count=5, wait_seconds=5))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await queue.publish("openai", "o")
    assert [d.task_id for d in await receiving] == ["o"]
    assert time.monotonic() - started < 1
    assert await queue.receive(queues, "c", count=5, wait_seconds=0.05) == []


async def test_rate_slots_are_a_sliding_window(queue: TaskQueue) -> None:
    granted = []
    for _ in range(3):
        slot = await queue.rate_slot("rpm:m", 3, 1.0, held_for=10)
        assert isinstance(slot, RateSlot)
        await queue.rate_slot_reached(slot)
        granted.append(slot)
    wait = await queue.rate_slot("rpm:m", 3, 1.0, held_for=10)
    assert isinstance(wait, float) and 0 < wait <= 1.0
    await asyncio.sleep(wait + 0.05)
    assert isinstance(await queue.rate_slot("rpm:m", 3, 1.0, held_for=10), RateSlot)


async def test_a_rate_slot_counts_until_its_call_reaches_the_provider(queue: TaskQueue) -> None:
    # The provider counts a call when it gets it: a slot whose call has not reached it yet is
    # counted past its window, and dated when the call does reach it.
    in_flight = await queue.rate_slot("rpm:m", 1, 0.6, held_for=10)
    assert isinstance(in_flight, RateSlot)
    await asyncio.sleep(0.8)
    wait = await queue.rate_slot("rpm:m", 1, 0.6, held_for=10)
    assert isinstance(wait, float) and wait == pytest.approx(0.6, abs=0.05)
    await queue.rate_slot_reached(in_flight)
    await asyncio.sleep(0.2)
    assert isinstance(await queue.rate_slot("rpm:m", 1, 0.6, held_for=10), float)
    await asyncio.sleep(0.5)
    assert isinstance(await queue.rate_slot("rpm:m", 1, 0.6, held_for=10), RateSlot)


async def test_an_undated_rate_slot_is_let_go_when_its_hold_runs_out(queue: TaskQueue) -> None:
    # Its caller died before the call reached the provider (or before it could say so).
    assert isinstance(await queue.rate_slot("rpm:m", 1, 0.2, held_for=0.2), RateSlot)
    assert isinstance(await queue.rate_slot("rpm:m", 1, 0.2, held_for=0.2), float)
    await asyncio.sleep(0.45)
    assert isinstance(await queue.rate_slot("rpm:m", 1, 0.2, held_for=0.2), RateSlot)
