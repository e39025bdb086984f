"""GET /metrics: this process's Prometheus metrics, with the queues measured as it is scraped."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aitasks import metrics
from aitasks.api.deps import ServicesDep, SessionDep
from aitasks.api.waiting import update_gauges
from aitasks.errors import RedisUnavailable
from aitasks.store import backlog
from aitasks.store.models import utcnow

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def read_metrics(services: ServicesDep, session: SessionDep) -> Response:
    """Counters and histograms of this process; queue depth and oldest waiting task per queue,
    and per lane and per tenant."""
    oldest = await backlog.oldest_pending(session)
    now = utcnow()
    for queue in services.models.queues:
        # When the queue is down the gauge keeps its last value; readiness says it is down.
        with contextlib.suppress(RedisUnavailable):
            metrics.QUEUE_DEPTH.labels(queue).set(await services.queue.depth(queue))
        waiting = (now - oldest[queue]).total_seconds() if queue in oldest else 0.0
        metrics.OLDEST_WAITING.labels(queue).set(waiting)
    # By lane and by tenant (bounded labels; see api/waiting.py).
    await update_gauges(session, services.models.queues, now)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
