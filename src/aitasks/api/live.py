"""Following a task as it runs: its Server-Sent Events stream, and waiting for it to finish.

Both read the task's event log (Redis, or memory on the embedded default) instead of polling the
database; the database is read once at the start, when the task finishes, and on each heartbeat as a
backstop in case a `done` event was lost.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from aitasks.errors import TaskNotFound
from aitasks.events import DONE
from aitasks.lifecycle.read import read_task
from aitasks.links import Links
from aitasks.services import Services
from aitasks.store.models import TERMINAL_STATUSES, Task
from aitasks.views import task_view

# What an event id looks like: "12" in memory, "1764383529123-0" on Redis.
EVENT_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?", re.ASCII)
PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
# How often a waiter looks at the database when no event arrives (a lost `done`).
WAIT_BACKSTOP_SECONDS = 5.0


def preferred_wait(prefer: str | None, cap: float) -> float | None:
    """Seconds asked for by `Prefer: wait=N` (RFC 7240), at most `cap`; None when not asked."""
    match = PREFER_WAIT.search(prefer or "")
    return min(float(match.group(1)), cap) if match else None


async def wait_for_task(services: Services, task_id: str, seconds: float, *, tenant: str) -> Task:
    """The tenant's task once it has finished, or as it is after `seconds`."""
    task = await read_task(services, task_id, tenant=tenant)
    deadline = time.monotonic() + seconds
    after: str | None = None
    while task.status not in TERMINAL_STATUSES:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        events = await services.events.read(
            task_id, after=after, wait_seconds=min(left, WAIT_BACKSTOP_SECONDS)
        )
        if events:
            after = events[-1].id
            if all(e.type != DONE for e in events):
                continue
        # A `done`, or a quiet spell: the database says whether it has really finished (a
        # `done` left from before a retry does not count).
        task = await read_task(services, task_id, tenant=tenant)
    return task


def sse(event: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def task_events(
    services: Services, task_id: str, links: Links, last_event_id: str | None, *, tenant: str
) -> AsyncIterator[str]:
    """The task's life as SSE: `status` and `delta` events, then `done` with the task, then end.

    With `last_event_id`, only what came after it is sent, so a reader that reconnects misses
    nothing and sees nothing twice.
    """
    try:
        heartbeat = services.settings.sse_heartbeat_seconds
        after = last_event_id
        events = await services.events.read(task_id, after=after, wait_seconds=0)
        while True:
            for event in events:
                if event.type == DONE:
                    task = await read_task(services, task_id, tenant=tenant)
                    yield sse(DONE, task_view(task, links).model_dump(mode="json"), event.id)
                    return
                yield sse(event.type, event.data, event.id)
                after = event.id
            if not events:
                task = await read_task(services, task_id, tenant=tenant)
                if task.status in TERMINAL_STATUSES:
                    # Finished, and its log expired or its `done` was lost: end the story now.
                    yield sse("status", {"status": task.status})
                    yield sse(DONE, task_view(task, links).model_dump(mode="json"))
                    return
            events = await services.events.read(task_id, after=after, wait_seconds=heartbeat)
            if not events:
                yield ": keep-alive\n\n"  # an SSE comment, so proxies keep the connection open
    except TaskNotFound:
        # Deleted with its conversation while being watched: say so, and end the stream.
        yield sse(DONE, {"task_id": task_id, "status": "DELETED"})
