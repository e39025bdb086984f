"""The reconciler: the database is the record, so whatever it says is unfinished gets run.

It finds tasks that are `PENDING` (and not waiting on an earlier turn) or `RUNNING` under an expired
lease, and that no queue entry holds, and publishes them again. That covers a Redis that restarted
empty, a publish lost between the gateway's commit and its answer, and an in-process queue that died
with its process. It runs inside every worker rather than as a command of its own: nothing extra to
deploy, and it keeps running wherever work is done. A lock in the queue lets one worker scan at a
time.

Each pass also ends `EXPIRED` every waiting task past its deadline (`worker/deadlines.py`), so
such a task does not wait for its queue entry to come up to be seen expired, and ends the batches
whose tasks have all ended (`lifecycle/batches.py`).

Under the same lock it runs the retention purge (`lifecycle/retention.py`) every few minutes, in
batches, for at most half an interval per pass, so the lock (held for most of an interval) never
runs out under it; a purge with more to do goes on at the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import timedelta

from aitasks.lifecycle.batches import finish_batches
from aitasks.lifecycle.placement import publish
from aitasks.lifecycle.retention import purge
from aitasks.services import Services
from aitasks.store import backlog
from aitasks.store.idempotency import purge_idempotency_keys
from aitasks.store.models import utcnow
from aitasks.worker import deadlines

log = logging.getLogger(__name__)

# Tasks looked at in one pass; a larger backlog is worked through over several passes.
BATCH = 1000
# Expired idempotency keys are purged once in this many passes.
PURGE_EVERY = 100
# How often this worker runs the retention purge when the last one finished (when it did not,
# the next pass goes on with it).
RETENTION_SECONDS = 300.0


class Reconciler:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.interval = services.settings.reconcile_seconds
        self._passes = 0
        # When this worker next runs the retention purge: soon after it starts.
        self.next_purge = time.monotonic() + self.interval

    async def run(self, stop: asyncio.Event) -> None:
        """A pass now, then one every interval (with jitter), until `stop` is set."""
        while not stop.is_set():
            try:
                if await self.services.queue.try_lock("reconciler", self.interval * 0.8):
                    started = time.monotonic()
                    await self.reconcile_once()
                    if started >= self.next_purge:
                        await self.purge_once(self.interval / 2 - (time.monotonic() - started))
            except Exception as exc:
                log.warning("reconciler pass failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval * random.uniform(0.8, 1.2))

    async def reconcile_once(self, *, pending_grace: float | None = None) -> int:
        """Publish again every stranded task; returns how many.

        `PENDING` tasks younger than `pending_grace` seconds (one interval by default) are left
        alone: their gateway may be publishing them right now.
        """
        grace = self.interval if pending_grace is None else pending_grace
        await deadlines.sweep(self.services)  # what waited past its deadline ends EXPIRED
        await finish_batches(self.services)  # a batch whose tasks have all ended ends too
        async with self.services.db.session() as session:
            stranded = await backlog.stranded_tasks(
                session, pending_before=utcnow() - timedelta(seconds=grace), limit=BATCH
            )
        queue = self.services.queue
        held = {name: await queue.queued_task_ids(name) for name in {t.queue for t in stranded}}
        lost = [task for task in stranded if task.id not in held[task.queue]]
        for task in lost:
            await publish(self.services, task)  # in its own lane
        if lost:
            log.info("reconciler: republished %d task(s) that no queue entry held", len(lost))
        self._passes += 1
        if self._passes % PURGE_EVERY == 0:
            async with self.services.db.session() as session:
                await purge_idempotency_keys(session)
        return len(lost)

    async def purge_once(self, budget_seconds: float) -> None:
        """Run the retention purge for at most `budget_seconds` (at least a batch)."""
        purged = await purge(self.services, budget_seconds=max(budget_seconds, 0.0))
        self.next_purge = time.monotonic() + (0 if not purged.finished else RETENTION_SECONDS)
