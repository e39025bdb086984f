"""Deadlines in the worker: what follows a task's expiry (at its claim, or found by the sweep),
and the bound `timeout_seconds` puts on a task's run across all its attempts.

A task's `timeout_seconds` counts from its first start (`started_at`), through retries, backoff,
fallbacks and takeovers by other workers: when it runs out, the call in flight is stopped and the
task ends `FAILED` with type `timeout`; a task claimed again after it ran out fails at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aitasks import metrics
from aitasks.errors import RedisUnavailable
from aitasks.events.base import DONE, STATUS
from aitasks.lifecycle.turns import publish_next_turn, release_next_turn
from aitasks.priority import QueuedTask
from aitasks.services import Services
from aitasks.store import deadlines as store
from aitasks.store.models import Task, TaskStatus, as_utc, utcnow
from aitasks.worker.run import TaskRun

log = logging.getLogger(__name__)

TIMEOUT = "timeout"


def run_left(task: Task) -> float | None:
    """Seconds left of the task's run bound (None: it has none; 0 or less: it is over)."""
    started = as_utc(task.started_at)
    if task.timeout_seconds is None or started is None:
        return None
    return task.timeout_seconds - (utcnow() - started).total_seconds()


def timed_out_message(task: Task) -> str:
    return f"the task ran past its timeout of {task.timeout_seconds:g} seconds (all attempts)"


def watch(run: TaskRun) -> asyncio.TimerHandle | None:
    """Stop the run's call when the task's run bound runs out (see `TaskRun.time_out`)."""
    left = run_left(run.task)
    if left is None:
        return None
    return asyncio.get_running_loop().call_later(max(0.0, left), run.time_out)


async def ended_expired(
    services: Services, task: Task, next_turn: QueuedTask | None = None, *, look: bool = False
) -> None:
    """What follows a task's expiry (already written, with its webhook): its stream ends, it is
    counted, its key's slot and reserved tokens are given back (the model was never called),
    and the turn that waited on it is published (`next_turn`, or looked up when `look`).
    Best effort: a miss is caught by the reconciler, the key's check against the database."""
    metrics.TASKS_FINISHED.labels(
        services.models.label_of(task.model), task.queue, TaskStatus.EXPIRED
    ).inc()
    try:
        await services.events.append(task.id, STATUS, {"status": TaskStatus.EXPIRED})
        await services.events.append(task.id, DONE, {})
        if task.api_key_id:
            await services.limits.release(task.api_key_id, [task.id], refund=True)
        if look:
            await release_next_turn(services, task)
        else:
            await publish_next_turn(services, next_turn)
    except RedisUnavailable as exc:
        log.warning("task %s expired; its stream or next turn waits for Redis: %s", task.id, exc)


async def sweep(services: Services) -> int:
    """Expire the `PENDING` tasks never started whose deadline has passed, a batch at a time,
    then see to each (see `ended_expired`); how many expired."""
    expired: Sequence[Task] = ()
    total = 0
    while True:
        async with services.db.session() as session:
            expired = await store.expire_due(session, utcnow())
        for task in expired:
            await ended_expired(services, task, look=True)
        total += len(expired)
        if len(expired) < store.SWEEP_BATCH:
            if total:
                log.info("%d task(s) expired, not started before their deadline", total)
            return total
