"""The operations page's queries: what finished in a window, how long it waited and ran, and the
page's samples when they are kept in the database (the embedded default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.store.models import OpsSample, Task, as_utc


@dataclass(frozen=True, slots=True)
class Timing:
    """How long one finished task waited for a worker and then ran, in seconds."""

    queue: str
    wait: float | None
    run: float | None


async def finished_between(
    session: AsyncSession, since: datetime, until: datetime
) -> dict[tuple[str, str], int]:
    """How many tasks of each (queue, status) finished in (since, until]."""
    rows = await session.execute(
        select(Task.queue, Task.status, func.count())
        .where(Task.finished_at > since, Task.finished_at <= until)
        .group_by(Task.queue, Task.status)
    )
    return {(queue, status): int(count) for queue, status, count in rows}


async def timings_between(
    session: AsyncSession, since: datetime, until: datetime, *, limit: int
) -> list[Timing]:
    """Wait (submit to first claim) and run (first claim to end) of up to `limit` of the tasks
    that finished in (since, until]: enough for percentiles without reading a busy minute whole."""
    rows = await session.execute(
        select(Task.queue, Task.created_at, Task.started_at, Task.finished_at)
        .where(Task.finished_at > since, Task.finished_at <= until)
        .limit(limit)
    )
    timings = []
    for queue, created, started, finished in rows:
        created, started, finished = as_utc(created), as_utc(started), as_utc(finished)
        wait = (started - created).total_seconds() if started and created else None
        run = (finished - started).total_seconds() if finished and started else None
        timings.append(Timing(queue, wait, run))
    return timings


async def add_sample(
    session: AsyncSession, at: datetime, data: dict[str, Any], *, keep_since: datetime
) -> None:
    """Store a sample, and drop those older than `keep_since`."""
    async with session.begin():
        await session.execute(delete(OpsSample).where(OpsSample.at < keep_since))
        await session.execute(insert(OpsSample).values(at=at, data=data))


async def samples_since(session: AsyncSession, since: datetime) -> Sequence[OpsSample]:
    """The samples taken after `since`, oldest first."""
    rows = await session.scalars(
        select(OpsSample).where(OpsSample.at > since).order_by(OpsSample.at)
    )
    return rows.all()


async def last_sample_at(session: AsyncSession) -> datetime | None:
    """When the newest sample was taken, if any."""
    return as_utc(await session.scalar(select(func.max(OpsSample.at))))
