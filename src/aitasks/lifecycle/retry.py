"""Retry: a `FAILED` or `CANCELLED` task runs again from the start."""

from __future__ import annotations

import logging

from aitasks.auth.caller import Caller
from aitasks.errors import RedisUnavailable
from aitasks.events.base import STATUS
from aitasks.lifecycle.admission import admit, unadmit
from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.models import Task

log = logging.getLogger(__name__)


async def retry_task(services: Services, caller: Caller, task_id: str) -> Task:
    """Put the caller's finished-unsuccessfully task back to `PENDING` with a fresh set of
    attempts, and queue it. It counts against the key's tasks in flight again (admitted first,
    un-admitted if the write is refused)."""
    if caller.key is not None:
        await admit(services, caller.key, task_id)
    try:
        async with services.db.session() as session:
            task = await store.retry_task(session, task_id, tenant=caller.tenant)
    except Exception:
        await unadmit(services, caller, [task_id])
        raise
    try:
        # It runs again from the start: so does its stream.
        await services.events.reset(task.id)
        await services.events.append(task.id, STATUS, {"status": task.status})
        await services.queue.publish(task.queue, task.id)
    except RedisUnavailable as exc:
        log.warning("task %s: queue unreachable; the reconciler catches up: %s", task.id, exc)
    return task
