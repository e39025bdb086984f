"""A response's event stream as Server-Sent Events, read from its task's event log, live to the end.

Every gateway reads the same log (Redis) and the same database, so a stream resumes
(`starting_after`) from any gateway, and after a gateway restart. A response that has already
ended is told from the stored task alone, so its stream is whole even once its log has expired or
Redis was emptied; the numbers match a live reading's (`response_events`).

A stream ends with the response's terminal event, or with an `error` event: when the event log or
the database cannot be reached (the response goes on; resume after the number it gives), when the
response was deleted, or when its reply is being made again after this reader was sent some of an
earlier attempt's (`stream_interrupted`: resume after `ITEMS_START - 1` to read the new one).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aitasks.api.openai.response_events import (
    ITEMS_START,
    ResponseStreamView,
    current_attempt,
    error_event,
)
from aitasks.api.openai.response_view import response_object
from aitasks.errors import ServiceUnavailable, TaskNotFound
from aitasks.events.base import DONE, Event
from aitasks.lifecycle.read import read_task
from aitasks.services import Services
from aitasks.store.models import TERMINAL_STATUSES, Task

log = logging.getLogger(__name__)

KEEP_ALIVE = ": keep-alive\n\n"


def sse_event(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"


async def response_sse(
    services: Services, task: Task, *, starting_after: int | None
) -> AsyncIterator[str]:
    """The response's events with a `sequence_number` above `starting_after` (all without it),
    as SSE text, live until the response ends."""
    reader = _Reader(services, task, starting_after)
    try:
        async for text in reader.read():
            yield text
    except TaskNotFound:
        yield reader.error("not_found", f"response resp_{task.id} was deleted")
    except ServiceUnavailable as exc:
        log.info("response %s: stream cut short: %s", task.id, exc)
        yield reader.error(exc.error_type, f"the stream broke off: {exc.message}")
    except Exception:
        log.exception("response %s: stream failed", task.id)
        yield reader.error("internal_error", "the stream broke off on an unexpected error")


class _Reader:
    def __init__(self, services: Services, task: Task, starting_after: int | None) -> None:
        self.services = services
        self.task = task
        self.after = -1 if starting_after is None else starting_after
        # The number of the last event this reader has: the one to resume after.
        self.last = self.after
        self.view = ResponseStreamView(task.id, response_object(task))

    def error(self, code: str, message: str) -> str:
        resume = f"resume with starting_after={self.last}" if self.last >= 0 else "start again"
        return sse_event(error_event(code, f"{message}; {resume}", self.last))

    def _send(self, events: Iterable[dict[str, Any]]) -> str:
        """The events this reader has not had yet, as SSE text."""
        texts = []
        for event in events:
            if event["sequence_number"] > self.after:
                texts.append(sse_event(event))
                self.last = event["sequence_number"]
        return "".join(texts)

    @property
    def _holds_items(self) -> bool:
        """Whether this reader has output items (of some attempt): sent now, or before."""
        return max(self.after, self.last) >= ITEMS_START

    async def _final(self) -> Task | None:
        task = await read_task(self.services, self.task.id, tenant=self.task.tenant)
        return task if task.status in TERMINAL_STATUSES else None

    async def read(self) -> AsyncIterator[str]:
        services, task_id = self.services, self.task.id
        final = await self._final()
        if final is not None:
            # Ended: its story from the stored task, whatever is left of its log.
            yield self._send(self.view.finish(response_object(final)))
            return
        yield self._send(self.view.start())
        events = await services.events.read(task_id, after=None, wait_seconds=0)
        after_id = events[-1].id if events else None
        events = current_attempt(events)
        heartbeat = services.settings.sse_heartbeat_seconds
        while True:
            for event in events:
                text, ended = await self._feed(event)
                if text:
                    yield text
                if ended:
                    return
            events = await services.events.read(task_id, after=after_id, wait_seconds=heartbeat)
            if events:
                after_id = events[-1].id
                continue
            final = await self._final()
            if final is None:
                yield KEEP_ALIVE  # so proxies keep the connection open
                continue
            # Ended with nothing more in its log after what was read: what came meanwhile, else
            # its `done` was lost or its log expired, and the stored task ends the story.
            events = await services.events.read(task_id, after=after_id, wait_seconds=0)
            if events:
                after_id = events[-1].id
                continue
            yield self._send(self.view.finish(response_object(final)))
            return

    async def _feed(self, event: Event) -> tuple[str, bool]:
        """The SSE text one log event makes, and whether the stream ends with it."""
        if event.type == DONE:
            final = await self._final()
            if final is None:
                return "", False  # a `done` from before a retry: the new run's events follow
            return self._send(self.view.finish(response_object(final))), True
        held_items = self._holds_items
        made = self.view.feed(event.type, event.data)
        if self.view.restarted:
            self.view.restarted = False
            if held_items:
                message = (
                    "the reply was interrupted and is being made again (a new attempt); resume "
                    f"with starting_after={ITEMS_START - 1} to read it from its start"
                )
                return sse_event(error_event("stream_interrupted", message, self.last)), True
        return self._send(made), False
