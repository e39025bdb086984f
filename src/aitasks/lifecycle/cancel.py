"""Cancel: a task that has not finished never runs, or stops running, and its turn is over."""

from __future__ import annotations

import logging

from aitasks.errors import RedisUnavailable
from aitasks.lifecycle.stop import stop_task
from aitasks.lifecycle.turns import release_next_turn
from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.models import Task

log = logging.getLogger(__name__)


async def cancel_task(services: Services, task_id: str, *, tenant: str) -> Task:
    """Cancel the tenant's `PENDING` or `RUNNING` task (`Conflict` once it has finished).

    The cancel is committed first; then, best effort, its worker is told to stop, its key's slot
    is freed (its reserved tokens given back if it never ran), and the conversation's next turn
    need not wait any longer. What an unreachable Redis
    misses here, the worker's lease renewal and the reconciler catch up on.
    """
    async with services.db.session() as session:
        task = await store.cancel_task(session, task_id, tenant=tenant)
    try:
        await stop_task(services, task.id, task.status)
        if task.api_key_id:
            # A task that never ran used no tokens: its reservation goes back. One that ran
            # keeps its estimate counted (the provider was at work; the worker reports nothing).
            refund = task.started_at is None
            await services.limits.release(task.api_key_id, [task.id], refund=refund)
        await release_next_turn(services, task)
    except RedisUnavailable as exc:
        log.warning("task %s: queue unreachable; the reconciler catches up: %s", task.id, exc)
    return task
