"""Backpressure: a queue past its depth limit takes no more submits until workers catch up.

Every submit checks the depth, which on Redis is a round trip that cost a submit more CPU than its
own publish. Concurrent submits share one read, and a read serves the submits of the next
`FRESH_SECONDS` too, each counting the submits admitted since on top of it; one under half the
limit (those admitted since counted) serves them for `FAR_BELOW_SECONDS`, so at low load a submit
does not wait for a round trip about a limit nowhere near. A submit is refused only on a fresh
read: a depth remembered can make one wait for a read, never refuse it wrongly. (What several
gateways admit within such a window can pass the limit together, as concurrent submits
always could: the limit is a brake, not an exact bound.)
"""

from __future__ import annotations

import asyncio
import time
import weakref

from aitasks.errors import QueueFull, RedisUnavailable
from aitasks.priority import Lane, priority_lanes
from aitasks.queue.base import TaskQueue

# How long a queue's depth, read once, serves the submits that follow it.
FRESH_SECONDS = 0.02
# How long a depth under half its queue's limit serves the submits that follow it.
FAR_BELOW_SECONDS = 1.0
# How long a client told "queue full" should wait before trying again, in seconds.
QUEUE_FULL_RETRY_AFTER = 5

Counted = tuple[str, tuple[Lane, ...]]


class DepthGauge:
    """The depths one gateway has read lately, and the submits it admitted since each read."""

    def __init__(self, queue: TaskQueue) -> None:
        self.queue = queue
        self.known: dict[Counted, tuple[float, int]] = {}
        self.reading: dict[Counted, asyncio.Future[int]] = {}

    async def depth(self, counted: Counted, limit: int, *, fresh: bool = False) -> int:
        """The depth of `counted` (a queue, and the lanes its `limit` counts): remembered, unless
        `fresh`; else read, once for every submit asking meanwhile."""
        known = self.known.get(counted)
        if not fresh and known is not None:
            age, depth = time.monotonic() - known[0], known[1]
            if age < FRESH_SECONDS or (age < FAR_BELOW_SECONDS and depth * 2 < limit):
                return depth
        pending = self.reading.get(counted)
        if pending is not None:
            return await asyncio.shield(pending)
        read = asyncio.ensure_future(self.queue.depth(counted[0], counted[1]))
        self.reading[counted] = read
        try:
            depth = await asyncio.shield(read)
        finally:
            del self.reading[counted]
        self.known[counted] = (time.monotonic(), depth)
        return depth

    def admitted(self, counted: Counted) -> None:
        """One more task on its way into `counted`: the next submits count it."""
        known = self.known.get(counted)
        if known is not None:
            self.known[counted] = (known[0], known[1] + 1)


_gauges: weakref.WeakKeyDictionary[TaskQueue, DepthGauge] = weakref.WeakKeyDictionary()


async def refuse_when_full(queue: TaskQueue, name: str, lane: Lane, limit: int) -> None:
    """429 when queue `name` holds `limit` tasks or more in the lanes `lane`'s limit counts (the
    batch lane apart from the others, so a large batch waiting never refuses interactive work);
    else count this submit as admitted."""
    gauge = _gauges.get(queue)
    if gauge is None:
        gauge = _gauges[queue] = DepthGauge(queue)
    counted = (name, priority_lanes(lane))
    try:
        depth = await gauge.depth(counted, limit)
        if depth >= limit:
            depth = await gauge.depth(counted, limit, fresh=True)
    except RedisUnavailable:
        return  # the task is still stored, and runs once the queue is back
    if depth >= limit:
        raise QueueFull(
            f"queue {name!r} holds {depth} tasks, its limit is {limit}; retry later",
            retry_after=QUEUE_FULL_RETRY_AFTER,
            limit=limit,
        )
    gauge.admitted(counted)
