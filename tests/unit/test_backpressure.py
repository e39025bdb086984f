"""The depth gauge behind backpressure: how often a submit waits for a read of the queue's depth,
and that a full queue is only ever refused on a fresh read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from aitasks.errors import QueueFull
from aitasks.lifecycle import backpressure
from aitasks.priority import Lane


class CountedDepths:
    """A queue whose depth is set by the test, counting the reads."""

    def __init__(self, depth: int) -> None:
        self.now_depth, self.reads = depth, 0

    async def depth(self, queue: str, lanes: Sequence[Lane] | None = None) -> int:
        self.reads += 1
        return self.now_depth


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(backpressure.time, "monotonic", lambda: now[0])
    return now


async def submit(queue: Any, limit: int) -> None:
    await backpressure.refuse_when_full(queue, "default", Lane.DEFAULT, limit)


async def test_a_depth_far_below_the_limit_serves_the_submits_of_a_second(
    clock: list[float],
) -> None:
    queue = CountedDepths(10)
    for _ in range(5):
        await submit(queue, 100)
        clock[0] += 0.1  # well past FRESH_SECONDS, within FAR_BELOW_SECONDS
    assert queue.reads == 1
    clock[0] += backpressure.FAR_BELOW_SECONDS
    await submit(queue, 100)
    assert queue.reads == 2


async def test_near_the_limit_each_submit_past_the_fresh_window_reads_again(
    clock: list[float],
) -> None:
    queue = CountedDepths(60)  # over half of 100
    for _ in range(3):
        await submit(queue, 100)
        clock[0] += 0.1
    assert queue.reads == 3


async def test_the_submits_admitted_since_count_towards_half_the_limit(
    clock: list[float],
) -> None:
    queue = CountedDepths(3)
    for _ in range(4):  # 3, then 4, 5, 6 remembered: 5 * 2 >= 10 reads again
        await submit(queue, 10)
        clock[0] += 0.1
    assert queue.reads == 2


async def test_a_full_queue_is_refused_only_on_a_fresh_read(clock: list[float]) -> None:
    queue = CountedDepths(1)
    await submit(queue, 4)  # remembered: 1, then 2 with this one
    queue.now_depth = 0  # workers caught up meanwhile
    clock[0] += 0.01
    await submit(queue, 4)  # 2 remembered: under the limit, admitted (3)
    await submit(queue, 4)  # 3 remembered, admitted (4)
    await submit(queue, 4)  # 4 remembered >= 4: read again, 0: admitted
    assert queue.reads == 2
    queue.now_depth = 4
    clock[0] += backpressure.FAR_BELOW_SECONDS  # the 1 remembered no longer serves
    with pytest.raises(QueueFull):
        await submit(queue, 4)
