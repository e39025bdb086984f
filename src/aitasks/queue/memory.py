"""The in-process queue of the embedded default: same contract as Redis Streams, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aitasks.priority import LANES, Lane, Placement
from aitasks.queue.base import Delivery, RateSlot, TaskQueue
from aitasks.queue.lanes import FairLanes, Waiting, take


@dataclass(slots=True)
class _Pending:
    delivery: Delivery
    consumer: str
    touched: float


class InProcessQueue(TaskQueue):
    """Queues held in memory. What it held is lost with the process; the database is the record,
    and the worker re-publishes unfinished tasks at start-up."""

    def __init__(self, *, redeliver_after: float, fifo: bool = False) -> None:
        super().__init__(redeliver_after=redeliver_after, fifo=fifo)
        # What waits to be handed out, by queue, lane and tenant.
        self._ready: dict[str, FairLanes] = {}
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._arrived = asyncio.Condition()
        self._locks: dict[str, float] = {}
        # Each rate window's slots: when each counts from (in flight: until when it is held).
        self._calls: dict[str, dict[str, float]] = {}
        self._beats: dict[str, tuple[float, dict[str, Any]]] = {}
        self._cancel_listeners: set[asyncio.Queue[str]] = set()

    async def publish_many(
        self, queue: str, tasks: Sequence[tuple[str, str | None]], placement: Placement
    ) -> None:
        placement = self.placed(placement)
        now = time.monotonic()
        entries = [
            Waiting(Delivery(queue, task_id, str(next(self._ids)), trace), placement.weight, now)
            for task_id, trace in tasks
        ]
        lanes = self._ready.setdefault(queue, FairLanes())
        lanes.push(placement.lane, placement.tenant, entries)
        async with self._arrived:
            self._arrived.notify_all()

    def _take(
        self, queues: Sequence[str], consumer: str, count: int, lanes: Sequence[Lane]
    ) -> list[Delivery]:
        now = time.monotonic()
        taken: list[Delivery] = []
        for pending in self._pending.values():
            if len(taken) == count:
                return taken
            if pending.delivery.queue in queues and now - pending.touched > self.redeliver_after:
                pending.consumer, pending.touched = consumer, now
                taken.append(pending.delivery)
        ready = [self._ready.setdefault(queue, FairLanes()) for queue in queues]
        for _, waiting in take(ready, count - len(taken), lanes):
            delivery = waiting.item
            assert isinstance(delivery, Delivery)
            self._pending[delivery.message_id] = _Pending(delivery, consumer, now)
            taken.append(delivery)
        return taken

    async def receive(
        self,
        queues: Sequence[str],
        consumer: str,
        *,
        count: int,
        wait_seconds: float,
        lanes: Sequence[Lane] | None = None,
    ) -> list[Delivery]:
        deadline = time.monotonic() + wait_seconds
        async with self._arrived:
            while True:
                taken = self._take(queues, consumer, count, lanes or LANES)
                left = deadline - time.monotonic()
                if taken or left <= 0:
                    return taken
                # Wake on a publish, or in time to hand out an abandoned delivery.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), min(left, self.redeliver_after))

    async def touch(self, delivery: Delivery, consumer: str) -> None:
        pending = self._pending.get(delivery.message_id)
        if pending is not None:
            pending.consumer, pending.touched = consumer, time.monotonic()

    async def ack(self, delivery: Delivery) -> None:
        self._pending.pop(delivery.message_id, None)

    async def depth(self, queue: str, lanes: Sequence[Lane] | None = None) -> int:
        ready = self._ready.get(queue)
        waiting = 0 if ready is None else ready.depth(lanes) if lanes is not None else ready.depth()
        return waiting + sum(1 for p in self._pending.values() if p.delivery.queue == queue)

    async def queued_task_ids(self, queue: str) -> set[str]:
        held = {p.delivery.task_id for p in self._pending.values() if p.delivery.queue == queue}
        ready = self._ready.get(queue)
        waiting = ready.items() if ready is not None else []
        return held | {d.task_id for d in waiting if isinstance(d, Delivery)}

    async def try_lock(self, name: str, seconds: float) -> bool:
        now = time.monotonic()
        if self._locks.get(name, 0) > now:
            return False
        self._locks[name] = now + seconds
        return True

    async def rate_slot(
        self, name: str, limit: int, per_seconds: float, *, held_for: float
    ) -> RateSlot | float:
        now = time.monotonic()
        calls = self._calls.setdefault(name, {})
        for member in [m for m, at in calls.items() if at <= now - per_seconds]:
            del calls[member]
        if len(calls) < limit:
            member = str(next(self._ids))
            calls[member] = now + held_for  # counted as reaching the provider any moment
            return RateSlot(name, member, per_seconds)
        # A slot in flight frees one window after it is dated, no sooner than now.
        return min(min(calls.values()), now) + per_seconds - now

    async def rate_slot_reached(self, slot: RateSlot) -> None:
        self._calls.setdefault(slot.name, {})[slot.member] = time.monotonic()

    async def beat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        self._beats[worker_id] = (time.monotonic() + ttl, info)

    async def workers(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [info for until, info in self._beats.values() if until > now]

    async def announce_cancel(self, task_id: str) -> None:
        for listener in self._cancel_listeners:
            listener.put_nowait(task_id)

    async def cancellations(self) -> AsyncIterator[str]:
        listener: asyncio.Queue[str] = asyncio.Queue()
        self._cancel_listeners.add(listener)
        try:
            while True:
                yield await listener.get()
        finally:
            self._cancel_listeners.discard(listener)

    async def ping(self) -> None:
        return None
