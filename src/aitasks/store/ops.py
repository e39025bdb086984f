"""The operations page's queries: what finished in a window, how long it waited and ran (the
median and 95th percentile, worked out by PostgreSQL itself, or here from a bounded read of
the rows on SQLite), and the page's samples when kept in the database (the embedded default)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select
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


# The percentiles a sample keeps, by name.
SHARES = {"p50": 0.5, "p95": 0.95}
# Finished tasks read per window on SQLite, where the percentiles are worked out here.
TIMINGS_LIMIT = 2000


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` of 1) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def timing_percentiles(
    session: AsyncSession, since: datetime, until: datetime
) -> dict[str, dict[str, float | None]]:
    """Per queue, the wait and run percentiles (`wait_p50`, `wait_p95`, `run_p50`, `run_p95`, in
    seconds, nearest rank) of the tasks that finished in (since, until]."""
    if session.get_bind().dialect.name == "postgresql":
        return await _percentiles_in_postgresql(session, since, until)
    waits: dict[str, list[float]] = defaultdict(list)
    runs: dict[str, list[float]] = defaultdict(list)
    for timing in await timings_between(session, since, until, limit=TIMINGS_LIMIT):
        if timing.wait is not None:
            waits[timing.queue].append(timing.wait)
        if timing.run is not None:
            runs[timing.queue].append(timing.run)
    return {
        queue: {
            f"{what}_{name}": percentile(values[queue], share)
            for what, values in (("wait", waits), ("run", runs))
            for name, share in SHARES.items()
        }
        for queue in {*waits, *runs}
    }


async def _percentiles_in_postgresql(
    session: AsyncSession, since: datetime, until: datetime
) -> dict[str, dict[str, float | None]]:
    """`timing_percentiles` as one grouped query: a few rows back, whatever the window held."""
    spans = {
        "wait": func.extract("epoch", Task.started_at - Task.created_at),
        "run": func.extract("epoch", Task.finished_at - Task.started_at),
    }
    columns: list[ColumnElement[Any]] = [
        func.percentile_disc(share).within_group(span).label(f"{what}_{name}")
        for what, span in spans.items()
        for name, share in SHARES.items()
    ]
    rows = await session.execute(
        select(Task.queue, *columns)
        .where(Task.finished_at > since, Task.finished_at <= until)
        .group_by(Task.queue)
    )
    return {
        row.queue: {
            key: None if value is None else float(value)
            for key, value in row._mapping.items()
            if key != "queue"
        }
        for row in rows
    }


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
