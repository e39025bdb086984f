"""Event logs in memory, for the embedded default.

Each task's log numbers its own events "1", "2", … (as the README shows), and keeps numbering on
after a reset, so a reader's `Last-Event-ID` from before a retry still means "after this".
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aitasks.events.base import DONE, FINISHED_LOG_TTL, MAX_EVENTS, Event, EventLog, Fence


@dataclass(slots=True)
class _Log:
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    last_id: int = 0
    fence: Fence | None = None

    @property
    def ended(self) -> bool:
        return bool(self.events) and self.events[-1].type == DONE


def _position(event_id: str | None) -> tuple[int, int]:
    """Where an id falls among this log's ids ("n" is n-0); a Redis-shaped "ms-seq" id is
    compared the same way, so an id past the end means nothing more; a malformed one is 0."""
    head, _, tail = (event_id or "").partition("-")
    tail = tail or "0"
    if not (head + tail).isascii() or not head.isdigit() or not tail.isdigit():
        return (0, 0)
    return (int(head), int(tail))


class InProcessEventLog(EventLog):
    def __init__(self, *, finished_ttl: float = FINISHED_LOG_TTL) -> None:
        self._logs: dict[str, _Log] = {}
        self._changed = asyncio.Condition()
        self._finished_ttl = finished_ttl

    async def append_many(
        self,
        task_id: str,
        events: list[tuple[str, dict[str, Any]]],
        *,
        first: bool = True,
        fence: Fence | None = None,
    ) -> list[str]:
        log = self._logs.setdefault(task_id, _Log())
        if log.ended:
            return []  # the story has ended (a late delta of a cancelled run)
        if fence is not None:
            if log.fence is not None and fence < log.fence:
                return []  # a newer claim (another worker, a retry) writes this log now
            log.fence = fence
        ids: list[str] = []
        for event_type, data in events:
            log.last_id += 1
            event = Event(id=str(log.last_id), type=event_type, data=data, at=time.time())
            log.events.append(event)
            ids.append(event.id)
            if event_type == DONE:
                if log.fence is not None:
                    log.fence = log.fence.ended()
                loop = asyncio.get_running_loop()
                loop.call_later(self._finished_ttl, self._forget, task_id, event)
                break
        async with self._changed:
            self._changed.notify_all()
        return ids

    def _forget(self, task_id: str, done: Event) -> None:
        log = self._logs.get(task_id)
        if log and log.events and log.events[-1] is done:  # not run again since
            del self._logs[task_id]

    def _after(self, task_id: str, after: str | None) -> list[Event]:
        log = self._logs.get(task_id)
        if log is None:
            return []
        start = _position(after)
        return [e for e in log.events if (int(e.id), 0) > start]

    async def read(self, task_id: str, *, after: str | None, wait_seconds: float) -> list[Event]:
        events = self._after(task_id, after)
        if events or wait_seconds <= 0:
            return events
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: bool(self._after(task_id, after))),
                    wait_seconds,
                )
            except TimeoutError:
                return []
        return self._after(task_id, after)

    async def last(self, task_id: str) -> Event | None:
        log = self._logs.get(task_id)
        return log.events[-1] if log and log.events else None

    async def reset(self, task_id: str) -> None:
        log = self._logs.get(task_id)
        if log is not None:
            log.events.clear()  # its numbering and its fence go on
