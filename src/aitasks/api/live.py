"""Following a task as it runs: its Server-Sent Events stream, and waiting for it to finish.

Both read the task's event log (Redis, or memory on the embedded default) instead of polling the
database; the database is read once at the start, when the task finishes, and on each heartbeat as a
backstop in case a `done` event was lost.

A stream always ends well-formed: with `done`; with nothing more for a reader already past the end;
or, when its event log (or the database) cannot be reached, with an `error` event saying so and
naming the last id sent, to reconnect with as `Last-Event-ID`. A wait whose event log is down
watches the database instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from aitasks.errors import RedisUnavailable, ServiceUnavailable, TaskNotFound
from aitasks.events import DONE
from aitasks.events.base import STATUS
from aitasks.lifecycle.read import read_task
from aitasks.links import Links
from aitasks.services import Services
from aitasks.store.models import TERMINAL_STATUSES, Task
from aitasks.views import task_view

log = logging.getLogger(__name__)

# What an event id looks like: "12" in memory, "1764383529123-0" on Redis.
EVENT_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?", re.ASCII)
PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
# How often a waiter looks at the database when no event arrives (a lost `done`).
WAIT_BACKSTOP_SECONDS = 5.0
# How often a waiter looks at the database while the event log cannot be reached.
LOG_DOWN_POLL_SECONDS = 1.0
# The ids of the `status` and `done` a stream makes up from the database when the log has no `done`
# (it expired, or the `done` was lost): past any real id on either log, so a reader that reconnects
# with the last of them gets nothing more.
MADE_UP_STATUS_ID = "18446744073709551615-18446744073709551614"
MADE_UP_DONE_ID = "18446744073709551615-18446744073709551615"
# What a stream sends a reader that is already past the end, before it ends.
NOTHING_MORE = ": the task has ended; nothing follows\n\n"
# How long an SSE reader (a browser's EventSource) waits before reconnecting after an `error`.
RECONNECT_MS = 2000


def preferred_wait(prefer: str | None, cap: float) -> float | None:
    """Seconds asked for by `Prefer: wait=N` (RFC 7240), at most `cap`; None when not asked."""
    match = PREFER_WAIT.search(prefer or "")
    return min(float(match.group(1)), cap) if match else None


async def wait_for_task(services: Services, task_id: str, seconds: float, *, tenant: str) -> Task:
    """The tenant's task once it has finished, or as it is after `seconds`. While the event log
    cannot be reached, the database is read every `LOG_DOWN_POLL_SECONDS` instead."""
    task = await read_task(services, task_id, tenant=tenant)
    deadline = time.monotonic() + seconds
    after: str | None = None
    while task.status not in TERMINAL_STATUSES:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            events = await services.events.read_until(
                task_id, DONE, after=after, wait_seconds=min(left, WAIT_BACKSTOP_SECONDS)
            )
        except RedisUnavailable as exc:
            log.info("task %s: event log unreachable, waiting on the database: %s", task_id, exc)
            await asyncio.sleep(min(left, LOG_DOWN_POLL_SECONDS))
            events = []
        if events:
            after = events[-1].id
        # A `done`, the end of the wait (or of a backstop's spell) or a log that is down: the
        # database says how the task stands (a `done` left from before a retry does not count).
        task = await read_task(services, task_id, tenant=tenant)
    return task


def sse(event: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_error(error_type: str, message: str, last_event_id: str | None) -> str:
    """The `error` event that ends a stream which cannot go on. It has no id, so a reader's
    `Last-Event-ID` stays the last event it got; `retry:` tells an EventSource when to come back."""
    resume = (
        f"reconnect with Last-Event-ID: {last_event_id} to resume"
        if last_event_id
        else "reconnect to start again"
    )
    body = {
        "error": {
            "type": error_type,
            "message": f"{message}; {resume}",
            "param": None,
            "last_event_id": last_event_id,
        }
    }
    return f"retry: {RECONNECT_MS}\n{sse('error', body)}"


async def task_events(
    services: Services, task_id: str, links: Links, last_event_id: str | None, *, tenant: str
) -> AsyncIterator[str]:
    """The task's life as SSE: `status` and `delta` events, then `done` with the task, then end.

    With `last_event_id`, only what came after it is sent, so a reader that reconnects misses
    nothing and sees nothing twice; one already past the end gets nothing more.
    """
    after = last_event_id
    try:
        async for text, event_id in _task_events(services, task_id, links, after, tenant=tenant):
            yield text
            after = event_id or after
    except TaskNotFound:
        # Deleted with its conversation while being watched: say so, and end the stream.
        yield sse(DONE, {"task_id": task_id, "status": "DELETED"})
    except ServiceUnavailable as exc:
        log.info("task %s: event stream cut short: %s", task_id, exc)
        yield stream_error(exc.error_type, f"the stream broke off: {exc.message}", after)
    except Exception:
        log.exception("task %s: event stream failed", task_id)
        yield stream_error("internal_error", "the stream broke off on an unexpected error", after)


async def _task_events(
    services: Services, task_id: str, links: Links, after: str | None, *, tenant: str
) -> AsyncIterator[tuple[str, str | None]]:
    """What `task_events` sends, each piece with its event's id (None for a comment), so that
    the caller knows the last id sent when something fails."""
    if after in (MADE_UP_STATUS_ID, MADE_UP_DONE_ID):
        task = await read_task(services, task_id, tenant=tenant)
        if task.status in TERMINAL_STATUSES:
            if after == MADE_UP_DONE_ID:
                yield NOTHING_MORE, None
            else:
                yield _made_up_done(task, links), MADE_UP_DONE_ID
            return
        after = None  # run again since (a retry): its story from the start
    heartbeat = services.settings.sse_heartbeat_seconds
    events = await services.events.read(task_id, after=after, wait_seconds=0)
    while True:
        for event in events:
            if event.type == DONE:
                task = await read_task(services, task_id, tenant=tenant)
                yield sse(DONE, task_view(task, links).model_dump(mode="json"), event.id), event.id
                return
            yield sse(event.type, event.data, event.id), event.id
            after = event.id
        if not events:
            task = await read_task(services, task_id, tenant=tenant)
            if task.status in TERMINAL_STATUSES:
                newest = await services.events.last(task_id)
                if newest is not None and newest.type == DONE:
                    # Nothing after `after`, and the log's last event is its `done`: this reader
                    # has had the whole story.
                    yield NOTHING_MORE, None
                    return
                # Finished, and its log expired or its `done` was lost: end the story from the
                # database, with ids past any real one.
                yield sse(STATUS, {"status": task.status}, MADE_UP_STATUS_ID), MADE_UP_STATUS_ID
                yield _made_up_done(task, links), MADE_UP_DONE_ID
                return
        events = await services.events.read(task_id, after=after, wait_seconds=heartbeat)
        if not events:
            # An SSE comment, so proxies keep the connection open.
            yield ": keep-alive\n\n", None


def _made_up_done(task: Task, links: Links) -> str:
    return sse(DONE, task_view(task, links).model_dump(mode="json"), MADE_UP_DONE_ID)
