"""The operations page at `/ops` and what it reads beyond `/v1/status`: the sampled time-series of
the service's figures (`/v1/ops/series`) and one task's timeline (`/v1/ops/tasks/{id}`).

The page itself is static, like the one at `/`; its reads need a key while auth is on. The series
and the queues are the service's, as in `/v1/status`; a timeline is of the caller's own tasks.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from aitasks import lifecycle
from aitasks.api.auth import CallerDep
from aitasks.api.deps import ServicesDep
from aitasks.api.responses import errors
from aitasks.api.routes.web import WEB
from aitasks.ops import SERIES_SECONDS, Series, task_timeline

page_router = APIRouter(include_in_schema=False)
router = APIRouter(prefix="/v1/ops", tags=["health"], responses=errors())


async def get_series(request: Request) -> Series:
    series: Series = request.app.state.ops_series
    return series


SeriesDep = Annotated[Series, Depends(get_series)]


@page_router.get("/ops")
async def page() -> FileResponse:
    return FileResponse(WEB / "ops.html", headers={"Cache-Control": "no-cache"})


@router.get("/series")
async def read_series(
    series: SeriesDep,
    services: ServicesDep,
    caller: CallerDep,
    since: Annotated[
        float | None,
        Query(description="Only samples taken after this moment (epoch seconds)."),
    ] = None,
) -> Any:
    """The service's figures per queue, sampled every `AITASKS_OPS_SAMPLE_SECONDS` over the last
    hour, oldest first: tasks finished and failed in each sample's window (`seconds` long), queue
    depth, oldest waiting task, and the median and 95th percentile of wait and run time."""
    now = time.time()
    start = max(since or 0.0, now - SERIES_SECONDS)
    samples = await series.since(start)
    return {
        "now": now,
        "sample_seconds": services.settings.ops_sample_seconds,
        "series_seconds": SERIES_SECONDS,
        "samples": [s.as_json() for s in samples],
    }


@router.get("/tasks/{task_id}", responses=errors(404))
async def read_timeline(task_id: str, services: ServicesDep, caller: CallerDep) -> Any:
    """The task's timeline: submitted, queued, each attempt, the provider's first token, the
    end; with its trace id when it was traced."""
    task = await lifecycle.read_task(services, task_id, tenant=caller.tenant)
    return await task_timeline(services.events, task)
