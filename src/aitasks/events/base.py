"""The event log seam: append to a task's log; read what came after an id, waiting if needed.

Event ids grow within a log, so a reader that lost its connection asks for what came after the
last id it saw (SSE's `Last-Event-ID`) and misses nothing. Logs are bounded in length and expire a
while after their task finishes; the database stays the record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

# Event types: a status change ({"status", "attempt"?}), a piece of reply text ({"delta"}), and the
# last event of a task's life ({}), after which readers stop.
STATUS = "status"
DELTA = "delta"
DONE = "done"

# How long a finished task's log is kept for late readers, in seconds.
FINISHED_LOG_TTL = 3600
# Most events one task's log keeps (a long reply streams many deltas).
MAX_EVENTS = 20_000


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


class EventLog(ABC):
    @abstractmethod
    async def append(self, task_id: str, event_type: str, data: dict[str, Any]) -> str:
        """Add an event to the task's log; returns its id. A `done` event starts the expiry."""

    async def append_many(
        self, task_id: str, events: list[tuple[str, dict[str, Any]]], *, first: bool = True
    ) -> None:
        """Add events in order (one round trip where the store allows). `first=False` says an
        earlier call already started this log (its expiry is set; a `done` event still
        shortens it)."""
        for event_type, data in events:
            await self.append(task_id, event_type, data)

    @abstractmethod
    async def read(self, task_id: str, *, after: str | None, wait_seconds: float) -> list[Event]:
        """Events after id `after` (from the start when None), waiting up to `wait_seconds` for
        the first one when there are none yet."""

    @abstractmethod
    async def reset(self, task_id: str) -> None:
        """Forget a task's log (it is about to run again, from the start)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
