"""Event logs in memory, for the embedded default."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Any

from aitasks.events.base import DONE, FINISHED_LOG_TTL, MAX_EVENTS, Event, EventLog


class InProcessEventLog(EventLog):
    def __init__(self, *, finished_ttl: float = FINISHED_LOG_TTL) -> None:
        self._logs: dict[str, deque[Event]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._finished_ttl = finished_ttl

    async def append(self, task_id: str, event_type: str, data: dict[str, Any]) -> str:
        event = Event(id=str(next(self._ids)), type=event_type, data=data)
        log = self._logs.setdefault(task_id, deque(maxlen=MAX_EVENTS))
        if log and log[-1].type == DONE:
            return log[-1].id  # the story has ended (a late delta of a cancelled run)
        log.append(event)
        if event_type == DONE:
            asyncio.get_running_loop().call_later(self._finished_ttl, self._forget, task_id, event)
        async with self._changed:
            self._changed.notify_all()
        return event.id

    def _forget(self, task_id: str, done: Event) -> None:
        log = self._logs.get(task_id)
        if log and log[-1] is done:  # not run again since
            del self._logs[task_id]

    def _after(self, task_id: str, after: str | None) -> list[Event]:
        log = self._logs.get(task_id, ())
        start = int(after) if after and after.isascii() and after.isdigit() else 0
        return [e for e in log if int(e.id) > start]

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

    async def reset(self, task_id: str) -> None:
        self._logs.pop(task_id, None)
