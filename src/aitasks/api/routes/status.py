"""GET /v1/status: the queues, the workers alive, and recent failures, for `aitasks status`."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from fastapi import APIRouter

from aitasks.api import waiting
from aitasks.api.auth import CallerDep
from aitasks.api.deps import LinksDep, ServicesDep, SessionDep
from aitasks.api.responses import errors
from aitasks.api.routes.batches import batch_view
from aitasks.errors import RedisUnavailable
from aitasks.store import backlog
from aitasks.store import batches as batch_store
from aitasks.store import tasks as store
from aitasks.store.models import TaskStatus, utcnow
from aitasks.views import task_view

router = APIRouter(prefix="/v1", tags=["health"], responses=errors())

RECENT_FAILURES = 5
RECENT_BATCHES = 5


@router.get("/status")
async def read_status(
    services: ServicesDep, session: SessionDep, caller: CallerDep, links: LinksDep
) -> Any:
    """Each queue's depth, oldest waiting task and tasks finished in the last minute; each lane's
    depth and oldest wait, and the caller's own by lane; the caller's batches still running; the
    workers that sent a heartbeat lately; the latest failures."""
    now = utcnow()
    oldest = await backlog.oldest_pending(session)
    finished = await backlog.finished_since(session, now - timedelta(minutes=1))
    queues = []
    for name in services.models.queues:
        depth: int | None = None
        with contextlib.suppress(RedisUnavailable):
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
    except RedisUnavailable:
        workers = []
    # Queues and workers are the service's; failures are the caller's own.
    failures = await store.list_tasks(
        session, tenant=caller.tenant, status=TaskStatus.FAILED, limit=RECENT_FAILURES
    )
    # The caller's own batches still running, with how far each has come.
    going = [
        await batch_view(services, batch)
        for batch in await batch_store.going_of(session, tenant=caller.tenant, limit=RECENT_BATCHES)
    ]
    return {
        "queues": queues,
        # Every lane of every queue; the caller's own work waiting, by lane.
        "lanes": await waiting.lanes(session, services.models.queues, now),
        "mine": await waiting.tenant_lanes(session, caller.tenant, now),
        "batches": [view.model_dump(mode="json") for view in going],
        "workers": sorted(workers, key=lambda w: str(w.get("id"))),
        "recent_failures": [task_view(t, links).model_dump(mode="json") for t in failures],
    }
