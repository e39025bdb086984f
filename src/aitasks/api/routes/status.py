"""GET /v1/status: the queues, the workers alive, and recent failures, for `aitasks status`."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request

from aitasks.api.deps import ServicesDep, SessionDep
from aitasks.api.views import task_view
from aitasks.queue import QueueUnavailable
from aitasks.store import tasks as store
from aitasks.store.models import TaskStatus, utcnow

router = APIRouter(prefix="/v1", tags=["health"])

RECENT_FAILURES = 5


@router.get("/status")
async def read_status(services: ServicesDep, session: SessionDep, request: Request) -> Any:
    """Each queue's depth, oldest waiting task and tasks finished in the last minute; the workers
    that sent a heartbeat lately; the latest failures."""
    now = utcnow()
    oldest = await store.oldest_pending(session)
    finished = await store.finished_since(session, now - timedelta(minutes=1))
    queues = []
    for name in services.models.queues:
        depth: int | None = None
        with contextlib.suppress(QueueUnavailable):
            depth = await services.queue.depth(name)
        queues.append(
            {
                "name": name,
                "depth": depth,
                "oldest_waiting_seconds": (now - oldest[name]).total_seconds()
                if name in oldest
                else 0.0,
                "finished_last_minute": finished.get(name, 0),
            }
        )
    try:
        workers = await services.queue.workers()
    except QueueUnavailable:
        workers = []
    failures = await store.list_tasks(session, status=TaskStatus.FAILED, limit=RECENT_FAILURES)
    return {
        "queues": queues,
        "workers": sorted(workers, key=lambda w: str(w.get("id"))),
        "recent_failures": [
            task_view(t, request.base_url).model_dump(mode="json") for t in failures
        ],
    }
