"""Priority lanes and fair share, on every queue backend (in-process, Redis, Redis Cluster): the
order `aitasks.priority` promises, kept by one shared state whichever consumer receives."""

from __future__ import annotations

import asyncio

import pytest

from aitasks.priority import SHARE_CYCLE, Lane, Placement, lane_at
from aitasks.queue.base import Delivery, TaskQueue


def placed(lane: Lane, tenant: str = "t", weight: int = 1) -> Placement:
    return Placement(lane, tenant, weight)


async def take(queue: TaskQueue, n: int, queues: list[str] | None = None) -> list[Delivery]:
    """`n` deliveries received one at a time, by two consumers in turn (as several workers
    would), each acknowledged at once."""
    got: list[Delivery] = []
    for i in range(n):
        (delivery,) = await queue.receive(
            queues or ["q"], f"worker-{i % 2}", count=1, wait_seconds=1
        )
        await queue.ack(delivery)
        got.append(delivery)
    return got


async def test_higher_lanes_first_with_a_share_for_the_lower_ones(queue: TaskQueue) -> None:
    for lane in (Lane.BATCH, Lane.DEFAULT, Lane.INTERACTIVE):
        await queue.publish_many("q", [(f"{lane}-{i}", None) for i in range(8)], placed(lane))
    got = [d.task_id.split("-")[0] for d in await take(queue, 24)]
    # What the schedule says, pick by pick, with the lanes that still have work.
    left = {Lane.INTERACTIVE: 8, Lane.DEFAULT: 8, Lane.BATCH: 8}
    expected = []
    for pick in range(24):
        lane = lane_at(pick, {lane for lane, n in left.items() if n})
        assert lane is not None
        left[lane] -= 1
        expected.append(lane.value)
    assert got == expected
    assert got[:6] == ["interactive"] * 6 and got[6] == "default" and got[12] == "batch"


async def test_a_busy_lane_never_starves_the_ones_below(queue: TaskQueue) -> None:
    await queue.publish_many("q", [(f"i{n}", None) for n in range(60)], placed(Lane.INTERACTIVE))
    await queue.publish_many("q", [(f"b{n}", None) for n in range(60)], placed(Lane.BATCH))
    got = await take(queue, 2 * SHARE_CYCLE)
    # The batch lane's pick of each cycle; default has nothing, so its picks go interactive.
    assert sum(d.task_id.startswith("b") for d in got) == 2


async def test_tenants_take_turns_within_a_lane(queue: TaskQueue) -> None:
    await queue.publish_many("q", [(f"a{n}", None) for n in range(30)], placed(Lane.BATCH, "a"))
    await queue.publish_many("q", [(f"b{n}", None) for n in range(3)], placed(Lane.BATCH, "b"))
    got = [d.task_id for d in await take(queue, 8)]
    assert got == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "a4"]


async def test_a_tenant_back_from_idle_gets_no_burst(queue: TaskQueue) -> None:
    await queue.publish_many("q", [(f"a{n}", None) for n in range(30)], placed(Lane.DEFAULT, "a"))
    assert [d.task_id for d in await take(queue, 10)] == [f"a{n}" for n in range(10)]
    await queue.publish_many("q", [(f"b{n}", None) for n in range(10)], placed(Lane.DEFAULT, "b"))
    got = [d.task_id[0] for d in await take(queue, 6)]
    assert got.count("a") == 3 and got.count("b") == 3


async def test_a_tenants_share_follows_its_weight(queue: TaskQueue) -> None:
    await queue.publish_many("q", [(f"a{n}", None) for n in range(30)], placed(Lane.BATCH, "a", 2))
    await queue.publish_many("q", [(f"b{n}", None) for n in range(30)], placed(Lane.BATCH, "b", 1))
    got = [d.task_id[0] for d in await take(queue, 12)]
    assert got.count("a") == 8 and got.count("b") == 4


async def test_the_highest_lane_across_queues_goes_first(queue: TaskQueue) -> None:
    await queue.publish("bulk", "slow", placement=placed(Lane.BATCH))
    await queue.publish("chat", "typing", placement=placed(Lane.INTERACTIVE))
    got = [d.task_id for d in await take(queue, 2, ["bulk", "chat"])]
    assert got == ["typing", "slow"]


async def test_a_receive_takes_at_most_count_across_lanes_and_tenants(queue: TaskQueue) -> None:
    for tenant in ("a", "b"):
        for lane in (Lane.INTERACTIVE, Lane.BATCH):
            entries = [(f"{tenant}{lane}{n}", None) for n in range(5)]
            await queue.publish_many("q", entries, placed(lane, tenant))
    seen: list[str] = []
    while len(seen) < 20:
        got = await queue.receive(["q"], "w", count=3, wait_seconds=1)
        assert 1 <= len(got) <= 3
        seen += [d.task_id for d in got]
        for d in got:
            await queue.ack(d)
    assert len(set(seen)) == 20


async def test_depth_by_lane_and_what_the_queue_holds(queue: TaskQueue) -> None:
    await queue.publish_many("q", [(f"b{n}", "tp") for n in range(4)], placed(Lane.BATCH, "a"))
    await queue.publish("q", "i0", placement=placed(Lane.INTERACTIVE, "b"))
    await queue.publish("q", "plain")
    assert await queue.depth("q") == 6
    assert await queue.depth("q", [Lane.INTERACTIVE, Lane.DEFAULT]) == 2
    (handed,) = await queue.receive(["q"], "w", count=1, wait_seconds=1)
    assert handed.task_id == "i0"
    # Handed out and not yet acknowledged: still held, and counted in every lane's depth.
    assert await queue.depth("q", [Lane.DEFAULT]) == 2
    assert await queue.queued_task_ids("q") == {"i0", "plain", "b0", "b1", "b2", "b3"}
    await queue.ack(handed)
    assert await queue.depth("q") == 5


@pytest.mark.parametrize("trace", [None, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"])
async def test_a_waiting_entry_keeps_its_trace(queue: TaskQueue, trace: str | None) -> None:
    await queue.publish("q", "t1", trace=trace, placement=placed(Lane.BATCH, "a"))
    (delivery,) = await queue.receive(["q"], "w", count=1, wait_seconds=1)
    assert (delivery.task_id, delivery.trace) == ("t1", trace)


async def test_a_fifo_queue_ignores_lanes_and_tenants(queue: TaskQueue) -> None:
    queue.fifo = True  # AITASKS_QUEUE_ORDER=fifo: for comparison, first in, first out
    await queue.publish_many("q", [(f"b{n}", None) for n in range(3)], placed(Lane.BATCH, "a"))
    await queue.publish("q", "i0", placement=placed(Lane.INTERACTIVE, "b"))
    assert [d.task_id for d in await take(queue, 4)] == ["b0", "b1", "b2", "i0"]


async def test_a_receive_may_take_from_some_lanes_only(queue: TaskQueue) -> None:
    await queue.publish_many("q", [(f"b{n}", None) for n in range(3)], placed(Lane.BATCH))
    assert await queue.receive(["q"], "w", count=5, wait_seconds=0.05,
                               lanes=[Lane.INTERACTIVE]) == []  # fmt: skip
    waiting = asyncio.create_task(
        queue.receive(["q"], "w", count=5, wait_seconds=2, lanes=[Lane.INTERACTIVE])
    )
    await asyncio.sleep(0.1)
    await queue.publish("q", "i0", placement=placed(Lane.INTERACTIVE))
    assert [d.task_id for d in await waiting] == ["i0"]
    rest = await queue.receive(["q"], "w", count=5, wait_seconds=1)
    assert [d.task_id for d in rest] == ["b0", "b1", "b2"]
