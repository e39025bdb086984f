"""The event log seam: append to a task's log; read what came after an id, waiting if needed.

Event ids grow within a log, so a reader that lost its connection asks for what came after the
last id it saw (SSE's `Last-Event-ID`) and misses nothing. Logs are bounded in length and expire a
while after their task finishes; the database stays the record.

Writes from a worker are fenced, as its result writes are: each carries the `Fence` of the claim
it comes from, and a log refuses a write whose fence is older than one it has seen (another worker
took the task over, or the task was retried) and every write after its `done` (until a retry
resets it). So a worker frozen past its lease cannot mix its text into the attempt that replaced
it. The gateway's own events (PENDING at submit, CANCELLED) carry no fence.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Event types: a status change ({"status", "attempt"?}), a piece of reply text ({"delta"}), a
# piece of the model's reasoning ({"delta"}), a tool call the reply makes ({"id", "name",
# "arguments"}), and the last event of a task's life ({}), after which readers stop.
STATUS = "status"
DELTA = "delta"
REASONING = "reasoning"
TOOL_CALL = "tool_call"
DONE = "done"

# How long a finished task's log is kept for late readers, in seconds.
FINISHED_LOG_TTL = 3600
# Most events one task's log keeps (a long reply streams many deltas).
MAX_EVENTS = 20_000
# The attempt a log's fence holds once the run it names has ended (`done`): above any real one.
ENDED_ATTEMPT = 2**31 - 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]
    # When it was written (epoch seconds), where the id does not say: a Redis stream id starts
    # with its milliseconds (`written_at` reads either).
    at: float | None = field(default=None, compare=False)

    @property
    def written_at(self) -> float | None:
        """When the event was written, in epoch seconds (for a task's timeline)."""
        if self.at is not None:
            return self.at
        head, dash, _ = self.id.partition("-")
        return int(head) / 1000 if dash and head.isdigit() else None


@dataclass(frozen=True, slots=True, order=True)
class Fence:
    """Which claim of a task a write comes from, ordered oldest first: `run` is when the task's
    current run was first claimed (in microseconds; a retry starts a new run), `attempt` its
    attempt within that run (every claim and every retried attempt counts one more)."""

    run: int
    attempt: int

    @classmethod
    def of(cls, started_at: datetime | None, attempt: int) -> Fence:
        """The fence of a claim whose run started at `started_at` (UTC; naive means UTC)."""
        if started_at is None:
            return cls(0, attempt)
        if started_at.tzinfo is None:
            started_at = started_at.replace(tzinfo=UTC)
        return cls((started_at - _EPOCH) // timedelta(microseconds=1), attempt)

    def ended(self) -> Fence:
        """The fence once this run has ended: every write of the run is refused after it."""
        return Fence(self.run, ENDED_ATTEMPT)


@dataclass(frozen=True, slots=True)
class Append:
    """One `append_many` call, as `append_batch` takes several."""

    task_id: str
    events: list[tuple[str, dict[str, Any]]]
    first: bool = True
    fence: Fence | None = None


class EventLog(ABC):
    async def append(self, task_id: str, event_type: str, data: dict[str, Any]) -> str | None:
        """Add one unfenced event (the gateway's own) to the task's log; returns its id, or None
        when the log has ended (a `done` is in it). A `done` event starts the expiry."""
        ids = await self.append_many(task_id, [(event_type, data)])
        return ids[0] if ids else None

    @abstractmethod
    async def append_many(
        self,
        task_id: str,
        events: list[tuple[str, dict[str, Any]]],
        *,
        first: bool = True,
        fence: Fence | None = None,
    ) -> list[str]:
        """Add events in order, in one round trip, all or none; returns their ids (empty when
        refused). `fence` says which claim writes them: refused when the log has seen a newer
        one, or a `done` since the last reset; otherwise it becomes the log's fence. `first=False`
        says an earlier call already started this log (its expiry is set; a `done` event still
        shortens it). Events after a `done` in the same call are dropped."""

    async def append_batch(self, appends: Sequence[Append]) -> list[list[str] | Exception]:
        """Several `append_many`s (of different tasks) at once: in one round trip where the log
        can (a pipeline on Redis). Each gives what its `append_many` would, or the error that
        stopped it, alone."""
        results: list[list[str] | Exception] = []
        for a in appends:
            try:
                results.append(
                    await self.append_many(a.task_id, a.events, first=a.first, fence=a.fence)
                )
            except Exception as exc:
                results.append(exc)
        return results

    @abstractmethod
    async def read(self, task_id: str, *, after: str | None, wait_seconds: float) -> list[Event]:
        """Events after id `after` (from the start when None), waiting up to `wait_seconds` for
        the first one when there are none yet."""

    async def read_until(
        self, task_id: str, until: str, *, after: str | None, wait_seconds: float
    ) -> list[Event]:
        """Events after id `after`, up to the first of type `until` (and any read with it),
        waiting up to `wait_seconds` for that one; what came meanwhile when it did not. A waiter
        for the end (`Prefer: wait`) is not woken by each status and piece before it."""
        deadline = time.monotonic() + wait_seconds
        seen: list[Event] = []
        while True:
            left = deadline - time.monotonic()
            events = await self.read(task_id, after=after, wait_seconds=max(left, 0.0))
            seen += events
            if left <= 0 or any(event.type == until for event in events):
                return seen
            if events:
                after = events[-1].id

    @abstractmethod
    async def last(self, task_id: str) -> Event | None:
        """The newest event of the task's log; None when it is empty (or expired). A reader whose
        `after` finds nothing while this is `done` has seen the whole story."""

    @abstractmethod
    async def reset(self, task_id: str) -> None:
        """Forget a task's events (it is about to run again, from the start). Its fence stays, so
        a worker still holding an earlier run cannot write into the new one."""

    async def warm(self) -> None:  # noqa: B027 - optional hook; memory is ready
        """Connect and load scripts before serving (see `redis_connect.warm`)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
