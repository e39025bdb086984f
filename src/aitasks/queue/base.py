"""The queue seam: one small abstract class; Redis Streams and in-process implementations beside it.

Delivery is at-least-once. A delivery stays pending until it is acknowledged; one left pending past
`redeliver_after` seconds without a `touch` (its worker died) is handed to another consumer. The
database, not the queue, decides whether a delivered task still needs running.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aitasks.priority import Lane, Placement


@dataclass(frozen=True, slots=True)
class Delivery:
    """One task id handed to one consumer; `message_id` is what acknowledges it, `trace` the
    task's trace context (a W3C `traceparent`) when it was published with one."""

    queue: str
    task_id: str
    message_id: str
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class RateSlot:
    """One call taken in a shared rate window (see `TaskQueue.rate_slot`)."""

    name: str
    member: str
    per_seconds: float


class TaskQueue(ABC):
    """Named queues of task ids."""

    def __init__(self, *, redeliver_after: float, fifo: bool = False) -> None:
        self.redeliver_after = redeliver_after
        # First in, first out for everyone: every task waits in one lane, unshared.
        self.fifo = fifo

    def placed(self, placement: Placement | None) -> Placement:
        """Where a publish puts its tasks: their placement, or the one line of a FIFO queue."""
        return Placement() if placement is None or self.fifo else placement

    async def publish(
        self,
        queue: str,
        task_id: str,
        *,
        trace: str | None = None,
        placement: Placement | None = None,
    ) -> None:
        """Append a task id to a queue, in its lane and its tenant's share (`placement`; the
        default lane, unshared, when None); `trace` (the task's `traceparent`) rides along with
        it, so whoever it is delivered to, first or again, joins the task's trace."""
        await self.publish_many(queue, [(task_id, trace)], self.placed(placement))

    @abstractmethod
    async def publish_many(
        self, queue: str, tasks: Sequence[tuple[str, str | None]], placement: Placement
    ) -> None:
        """Append many (task id, trace) of one placement at once, in their order (a batch)."""

    @abstractmethod
    async def receive(
        self,
        queues: Sequence[str],
        consumer: str,
        *,
        count: int,
        wait_seconds: float,
        lanes: Sequence[Lane] | None = None,
    ) -> list[Delivery]:
        """Up to `count` deliveries from any of `queues`, waiting at most `wait_seconds`.

        Deliveries abandoned by a dead consumer come first; then, one pick at a time, the
        queue whose next lane is highest, its lane as `aitasks.priority` schedules, and in it
        the tenant whose turn it is (see `aitasks.priority`). With `lanes`, new work comes only
        from those lanes (a worker keeping its last slots for interactive work).
        """

    @abstractmethod
    async def touch(self, delivery: Delivery, consumer: str) -> None:
        """Tell the queue the delivery is still being worked on, so it is not handed out again."""

    @abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """Finish with a delivery for good."""

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Finish with several deliveries for good, in one round trip where the queue can."""
        for delivery in deliveries:
            await self.ack(delivery)

    @abstractmethod
    async def depth(self, queue: str, lanes: Sequence[Lane] | None = None) -> int:
        """How many entries the queue holds, delivered or not; with `lanes`, those delivered
        and those waiting in these lanes only."""

    @abstractmethod
    async def queued_task_ids(self, queue: str) -> set[str]:
        """Ids of every task the queue holds, delivered or not: what is in flight."""

    @abstractmethod
    async def try_lock(self, name: str, seconds: float) -> bool:
        """Take a lock shared by all processes for `seconds`; False when another holds it."""

    @abstractmethod
    async def rate_slot(
        self, name: str, limit: int, per_seconds: float, *, held_for: float
    ) -> RateSlot | float:
        """Take one of `limit` calls allowed in any `per_seconds` (a sliding window shared by all
        processes): the slot when taken, else the seconds to wait before asking again.

        The limit is the provider's, and the provider counts a call when it reaches it, some time
        after its slot is taken. So a slot counts in every window from its taking until
        `rate_slot_reached` dates it (at most `held_for` seconds: a caller that died never
        does), and from then on as a call made at that moment. Every call that reached the
        provider in the last `per_seconds` is then counted whenever a slot is taken: a window at
        the provider never holds more than `limit`.
        """

    @abstractmethod
    async def rate_slot_reached(self, slot: RateSlot) -> None:
        """Date a slot to now: its call has reached the provider (its answer began, or the call
        is over)."""

    @abstractmethod
    async def beat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        """Say this worker is alive, and how it is doing; it counts as gone after `ttl`."""

    @abstractmethod
    async def workers(self) -> list[dict[str, Any]]:
        """The workers alive now, as their last heartbeat described them."""

    @abstractmethod
    async def announce_cancel(self, task_id: str) -> None:
        """Tell every worker that a task was cancelled, so whoever runs it stops."""

    @abstractmethod
    def cancellations(self) -> AsyncIterator[str]:
        """Ids of cancelled tasks as they are announced, for as long as it is iterated."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise `RedisUnavailable` when the queue cannot be reached."""

    async def warm(self) -> None:  # noqa: B027 - optional hook; the in-process queue is ready
        """Connect and load scripts before serving (see `redis_connect.warm`)."""

    async def close(self) -> None:  # noqa: B027 - optional hook; the in-process queue holds nothing
        """Release connections."""
