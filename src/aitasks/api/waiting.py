"""What waits, by lane and by tenant, as `/metrics` and `/v1/status` show it (from the database,
the record): depth and the oldest wait. Tenants are bounded in the metrics: the
`metrics.TENANTS_SHOWN` with most waiting by name, the rest summed as `other`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aitasks import metrics
from aitasks.priority import LANES
from aitasks.store import backlog

OTHER = "other"


def _age(now: datetime, oldest: datetime | None) -> float:
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


async def lanes(session: AsyncSession, queues: list[str], now: datetime) -> list[dict[str, Any]]:
    """Every lane of every queue: tasks waiting and the oldest wait (zero when none)."""
    rows = await backlog.waiting_by_lane(session)
    found = {(queue, lane): (n, oldest) for queue, lane, n, oldest in rows}
    names = sorted({*queues, *(q for q, _ in found)})
    return [
        {"queue": queue, "lane": lane.value, "depth": found.get((queue, lane.value), (0, None))[0],
         "oldest_waiting_seconds": _age(now, found.get((queue, lane.value), (0, None))[1])}
        for queue in names
        for lane in LANES
    ]  # fmt: skip


async def tenant_lanes(session: AsyncSession, tenant: str, now: datetime) -> list[dict[str, Any]]:
    """One tenant's work waiting, by lane (every lane, zero when none)."""
    rows = await backlog.waiting_by_tenant(session, tenant=tenant)
    found = {lane: (n, oldest) for _, lane, n, oldest in rows}
    return [
        {"lane": lane.value, "depth": found.get(lane.value, (0, None))[0],
         "oldest_waiting_seconds": _age(now, found.get(lane.value, (0, None))[1])}
        for lane in LANES
    ]  # fmt: skip


async def update_gauges(session: AsyncSession, queues: list[str], now: datetime) -> None:
    """Set the lane and tenant gauges to what waits now (labels of lanes and tenants no longer
    waiting are dropped, so the tenants shown stay bounded)."""
    metrics.LANE_DEPTH.clear()
    metrics.LANE_OLDEST_WAITING.clear()
    for row in await lanes(session, queues, now):
        metrics.LANE_DEPTH.labels(row["queue"], row["lane"]).set(row["depth"])
        metrics.LANE_OLDEST_WAITING.labels(row["queue"], row["lane"]).set(
            row["oldest_waiting_seconds"]
        )
    by_tenant: dict[str, int] = {}
    rows = await backlog.waiting_by_tenant(session)
    for tenant, _, n, _ in rows:
        by_tenant[tenant] = by_tenant.get(tenant, 0) + n
    shown = set(sorted(by_tenant, key=lambda t: (-by_tenant[t], t))[: metrics.TENANTS_SHOWN])
    depth: dict[tuple[str, str], int] = {}
    oldest: dict[tuple[str, str], datetime] = {}
    for tenant, lane, n, at in rows:
        label = (tenant if tenant in shown else OTHER, lane)
        depth[label] = depth.get(label, 0) + n
        if at is not None and (label not in oldest or at < oldest[label]):
            oldest[label] = at
    metrics.TENANT_DEPTH.clear()
    metrics.TENANT_OLDEST_WAITING.clear()
    for label, n in depth.items():
        metrics.TENANT_DEPTH.labels(*label).set(n)
        metrics.TENANT_OLDEST_WAITING.labels(*label).set(_age(now, oldest.get(label)))
