"""The queues' backlog as the database sees it, service-wide: what status and metrics report."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.store.models import Task, TaskStatus, as_utc


async def oldest_pending(session: AsyncSession) -> dict[str, datetime]:
    """When the oldest `PENDING` task of each queue was submitted."""
    rows = await session.execute(
        select(Task.queue, func.min(Task.created_at))
        .where(Task.status == TaskStatus.PENDING)
        .group_by(Task.queue)
    )
    return {queue: as_utc(oldest) for queue, oldest in rows if oldest is not None}


async def finished_since(session: AsyncSession, since: datetime) -> dict[str, int]:
    """How many tasks of each queue finished since `since`."""
    rows = await session.execute(
        select(Task.queue, func.count()).where(Task.finished_at >= since).group_by(Task.queue)
    )
    return {queue: int(count) for queue, count in rows}
