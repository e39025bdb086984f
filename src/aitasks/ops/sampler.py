"""The gateway's sampler: every `AITASKS_OPS_SAMPLE_SECONDS`, the service's figures per queue go
into the operations page's series.

Each sample covers the time since the one before it (whoever took it), so the charts count every
finished task once: tasks finished (and failed, and cancelled) in that window, the depth and the
oldest waiting task of each queue, and the median and 95th percentile of how long the window's
tasks waited for a worker and then ran; and for each priority lane, summed over the queues, the
tasks waiting in it and its oldest. A finish is stamped before its transaction commits, so the
finishes a sample counts are those stamped up to `FINISH_SETTLE` before it: one still being
committed falls in a later window, not between two. Any number of gateways run a sampler; a lock
in the queue lets one of them sample each interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from aitasks.errors import RedisUnavailable
from aitasks.ops.series import Sample, Series
from aitasks.priority import LANES
from aitasks.services import Services
from aitasks.store import backlog
from aitasks.store import ops as store
from aitasks.store.models import TERMINAL_STATUSES, TaskStatus, utcnow
from aitasks.store.ops import percentile

__all__ = ["Sampler", "percentile"]

log = logging.getLogger(__name__)

# A gap longer than this many intervals since the last sample (no gateway ran) is not one window.
MAX_GAP_INTERVALS = 3
# How long a finish may take to commit after it was stamped and still be counted (a worker's flush
# on a loaded machine, SQLite waiting for its write lock): the finished counts lag this much.
FINISH_SETTLE = timedelta(seconds=2)


class Sampler:
    """Samples the service's figures into `series`, one gateway at a time."""

    def __init__(self, services: Services, series: Series) -> None:
        self.services = services
        self.series = series
        self.interval = services.settings.ops_sample_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every interval until `stop` is set (when this gateway holds the turn)."""
        while not stop.is_set():
            try:
                if await self.services.queue.try_lock("ops-sampler", self.interval * 0.9):
                    await self.sample_once()
            except Exception as exc:
                log.warning("operations sample not taken: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def sample_once(self, now: datetime | None = None) -> Sample:
        """Measure the window since the last sample, and add the sample to the series."""
        now = now or utcnow()
        last = await self.series.last_at()
        start = now - timedelta(seconds=self.interval)
        if last is not None and 0 < now.timestamp() - last <= MAX_GAP_INTERVALS * self.interval:
            start = datetime.fromtimestamp(last, UTC)
        sample = Sample(now.timestamp(), await self._measure(start, now, FINISH_SETTLE))
        await self.series.add(sample)
        return sample

    async def _measure(self, start: datetime, now: datetime, settle: timedelta) -> dict[str, Any]:
        async with self.services.db.session() as session:
            counts = await store.finished_between(session, start - settle, now - settle)
            timings = await store.timing_percentiles(session, start - settle, now - settle)
            oldest = await backlog.oldest_pending(session)
            by_lane = await backlog.waiting_by_lane(session)
        nothing = dict.fromkeys(("wait_p50", "wait_p95", "run_p50", "run_p95"))
        queues: dict[str, dict[str, Any]] = {}
        for name in sorted({*self.services.models.queues, *(q for q, _ in counts)}):
            depth: int | None = None
            with contextlib.suppress(RedisUnavailable):
                depth = await self.services.queue.depth(name)

            def count(*statuses: TaskStatus, queue: str = name) -> int:
                return sum(counts.get((queue, status), 0) for status in statuses)

            queues[name] = {
                "finished": count(*TERMINAL_STATUSES),
                "failed": count(TaskStatus.FAILED),
                "depth": depth,
                # A task submitted since `now` was read is not waiting less than nothing.
                "oldest_waiting": max(0.0, (now - oldest[name]).total_seconds())
                if name in oldest
                else 0.0,
                **nothing,
                **timings.get(name, {}),
            }
        lanes: dict[str, dict[str, Any]] = {
            lane.value: {"depth": 0, "oldest_waiting": 0.0} for lane in LANES
        }
        for _, lane, waiting, since in by_lane:
            figures = lanes.setdefault(lane, {"depth": 0, "oldest_waiting": 0.0})
            figures["depth"] += waiting
            if since is not None:
                age = max(0.0, (now - since).total_seconds())
                figures["oldest_waiting"] = max(figures["oldest_waiting"], age)
        return {"seconds": (now - start).total_seconds(), "queues": queues, "lanes": lanes}
