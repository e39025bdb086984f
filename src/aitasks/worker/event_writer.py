"""A task's events, written in order without making the provider's stream wait on Redis.

`emit` only queues an event; one writer per task sends what has queued up in one round trip, then
what queued up meanwhile, and so on. So the first piece of a reply goes out at once, later pieces
ride together while a write is in flight, and consecutive pieces of text travel as one `delta`.
Best effort, as before: the database has the outcome whatever becomes of an event.

Every write carries the fence of the claim as it stands when the write is sent (`fence()`; a retried
attempt counts one more), so a log that a newer claim has taken over refuses it: a worker frozen
past its lease cannot mix its text into the attempt that replaced it. Once refused, the writer
drops what it is given: nothing it holds can be written any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aitasks import telemetry
from aitasks.events.base import DELTA, REASONING, Append, EventLog, Fence
from aitasks.worker.flushes import flushes

log = logging.getLogger(__name__)


class EventAppender:
    """One worker's appends, of all its tasks: those that queue up while a pipeline is in
    flight go out together in the next (`flushes.py`), so a flush of finished tasks sends all
    their `done`s in one round trip."""

    def __init__(self, events: EventLog) -> None:
        self.events = events
        self._appends = flushes(events.append_batch)

    async def append(self, append: Append) -> list[str]:
        return await self._appends.hand_in(append)


class TaskEventWriter:
    def __init__(
        self,
        events: EventLog,
        task_id: str,
        fence: Callable[[], Fence],
        appender: EventAppender | None = None,
    ) -> None:
        self.events = events
        self.appender = appender
        self.task_id = task_id
        self.fence = fence
        self._queued: list[tuple[str, dict[str, Any]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._written_before = False
        self.fenced_off = False

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        if self.fenced_off:
            return
        last = self._queued[-1] if self._queued else None
        if event_type in (DELTA, REASONING) and last is not None and last[0] == event_type:
            self._queued[-1] = (event_type, {"delta": last[1]["delta"] + data["delta"]})
        else:
            self._queued.append((event_type, data))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write())

    async def _write(self) -> None:
        if not self._written_before:
            # One turn of the event loop before the first write, so what the same moment emits
            # rides along: the `RUNNING` status with a reply that comes at once, instead of a
            # round trip of its own. Later pieces go at once (what the provider's stream emits
            # in one step is queued before this task runs anyway): the time to each piece.
            await asyncio.sleep(0)
        while self._queued and not self.fenced_off:
            batch, self._queued = self._queued, []
            try:
                with telemetry.span("aitasks.events.publish", {"aitasks.events": len(batch)}):
                    written = await self._append(batch)
            except Exception as exc:
                log.warning("task %s: %d event(s) not published: %s", self.task_id, len(batch), exc)
                continue
            self._written_before = True
            if not written:
                # A newer claim holds the log, or its story has ended: this run's events are
                # no longer part of it.
                self.fenced_off = True
                self._queued = []
                log.info(
                    "task %s: %d event(s) refused by its log (taken over, or ended)",
                    self.task_id,
                    len(batch),
                )

    async def _append(self, batch: list[tuple[str, dict[str, Any]]]) -> list[str]:
        first, fence = not self._written_before, self.fence()
        if self.appender is None:
            return await self.events.append_many(self.task_id, batch, first=first, fence=fence)
        return await self.appender.append(Append(self.task_id, batch, first, fence))

    async def flush(self) -> None:
        """Wait until everything emitted so far is written (or given up on)."""
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)
