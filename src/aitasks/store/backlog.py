"""The queues' backlog as the database sees it, service-wide: what status and metrics report, and
what the reconciler looks for (tasks that may have no queue entry left)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.priority import QueuedTask
from aitasks.store.claims import QUEUED, earlier_turn_unfinished, queued_task
from aitasks.store.models import Task, TaskStatus, as_utc, utcnow

# Said beside each status test on unfinished tasks (it adds nothing to what they select: a task
# has a finish time exactly when it has finished), so the planner reads them through the partial
# index `ix_tasks_unfinished` rather than the whole table.
UNFINISHED = Task.finished_at.is_(None)


async def oldest_pending(session: AsyncSession) -> dict[str, datetime]:
    """When the oldest `PENDING` task of each queue was submitted."""
    rows = await session.execute(
        select(Task.queue, func.min(Task.created_at))
        .where(UNFINISHED, Task.status == TaskStatus.PENDING)
        .group_by(Task.queue)
    )
    return {queue: as_utc(oldest) for queue, oldest in rows if oldest is not None}


async def finished_since(session: AsyncSession, since: datetime) -> dict[str, int]:
    """How many tasks of each queue finished since `since`."""
    rows = await session.execute(
        select(Task.queue, func.count()).where(Task.finished_at >= since).group_by(Task.queue)
    )
    return {queue: int(count) for queue, count in rows}


async def stranded_tasks(
    session: AsyncSession, *, pending_before: datetime, limit: int
) -> Sequence[QueuedTask]:
    """Tasks that may have no queue entry left to run them.

    `PENDING` ones untouched since `pending_before` whose earlier turns have all finished (a later
    turn waiting on an earlier one is published when that one ends), and `RUNNING` ones whose lease
    ran out (their worker died).
    """
    now = utcnow()
    rows = await session.execute(
        select(*QUEUED)
        .where(
            UNFINISHED,
            or_(
                and_(
                    Task.status == TaskStatus.PENDING,
                    Task.updated_at < pending_before,
                    ~earlier_turn_unfinished(),
                ),
                and_(Task.status == TaskStatus.RUNNING, Task.lease_until < now),
            ),
        )
        .order_by(Task.created_at)
        .limit(limit)
    )
    return [queued_task(row) for row in rows]


async def waiting_by_lane(session: AsyncSession) -> list[tuple[str, str, int, datetime]]:
    """(queue, lane, tasks waiting, when the oldest was submitted) of every `PENDING` lane."""
    rows = await session.execute(
        select(Task.queue, Task.priority, func.count(), func.min(Task.created_at))
        .where(UNFINISHED, Task.status == TaskStatus.PENDING)
        .group_by(Task.queue, Task.priority)
    )
    return [(queue, lane, int(n), as_utc(oldest)) for queue, lane, n, oldest in rows]


async def waiting_by_tenant(
    session: AsyncSession, *, tenant: str | None = None
) -> list[tuple[str, str, int, datetime]]:
    """(tenant, lane, tasks waiting, when the oldest was submitted) of every tenant with
    `PENDING` work (only `tenant`'s when given), most waiting first."""
    query = (
        select(Task.tenant, Task.priority, func.count(), func.min(Task.created_at))
        .where(UNFINISHED, Task.status == TaskStatus.PENDING)
        .group_by(Task.tenant, Task.priority)
        .order_by(func.count().desc())
    )
    if tenant is not None:
        query = query.where(Task.tenant == tenant)
    rows = await session.execute(query)
    return [(who, lane, int(n), as_utc(oldest)) for who, lane, n, oldest in rows]
