"""A task's events, written in order without making the provider's stream wait on Redis.

`emit` only queues an event; one writer per task sends what has queued up in one round trip, then
what queued up meanwhile, and so on. So the first piece of a reply goes out at once, later pieces
ride together while a write is in flight, and consecutive pieces of text travel as one `delta`.
Best effort, as before: the database has the outcome whatever becomes of an event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aitasks.events.base import DELTA, EventLog

log = logging.getLogger(__name__)


class TaskEventWriter:
    def __init__(self, events: EventLog, task_id: str) -> None:
        self.events = events
        self.task_id = task_id
        self._queued: list[tuple[str, dict[str, Any]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._written_before = False

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        last = self._queued[-1] if self._queued else None
        if event_type == DELTA and last is not None and last[0] == DELTA:
            self._queued[-1] = (DELTA, {"delta": last[1]["delta"] + data["delta"]})
        else:
            self._queued.append((event_type, data))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write())

    async def _write(self) -> None:
        # One turn of the event loop first, so what the same moment emits rides along: the
        # `RUNNING` status with a reply that comes at once, instead of a round trip of its own.
        await asyncio.sleep(0)
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                await self.events.append_many(self.task_id, batch, first=not self._written_before)
                self._written_before = True
            except Exception as exc:
                log.warning("task %s: %d event(s) not published: %s", self.task_id, len(batch), exc)

    async def flush(self) -> None:
        """Wait until everything emitted so far is written (or given up on)."""
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)
