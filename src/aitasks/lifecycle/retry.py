"""Retry: a `FAILED` or `CANCELLED` task runs again from the start."""

from __future__ import annotations

import logging

from aitasks.auth.caller import Caller
from aitasks.errors import RedisUnavailable
from aitasks.events.base import STATUS
from aitasks.lifecycle.admission import admit, confirm, unadmit
from aitasks.lifecycle.placement import publish, queued
from aitasks.limits.tokens import chat_estimate
from aitasks.routing import ModelKind
from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.models import Task, new_id

log = logging.getLogger(__name__)


async def retry_task(services: Services, caller: Caller, task_id: str) -> Task:
    """Put the caller's finished-unsuccessfully task back to `PENDING` with a fresh set of
    attempts, and queue it. It counts against the key's tasks in flight and its tokens again.

    The admission is reserved under a ticket of its own, not the task's id: the task may still
    be running (then the retry is refused, 409), and giving back a refused retry's reservation
    must not free the slot the running task holds. Once the task is `PENDING` again, the ticket
    is confirmed as the task.
    """
    key = caller.key
    ticket = f"retry-{new_id()}"
    if key is not None:
        # 404 for another tenant's task, 409 for one not to retry, before anything is reserved;
        # and its size, for the estimate.
        earlier = await _read(services, task_id, caller.tenant)
        if earlier.status not in store.RETRYABLE_STATUSES:
            # Still running (or done): a 409 says so, whether or not the key is full.
            raise store.not_retryable(earlier)
        tokens = 0
        if earlier.kind == ModelKind.CHAT:
            tokens = chat_estimate(earlier.prompt, earlier.context, earlier.params)
        await admit(services, key, ticket, tokens=tokens)
    try:
        async with services.db.session() as session:
            task = await store.retry_task(session, task_id, tenant=caller.tenant)
    except BaseException:
        await unadmit(services, caller, [ticket])
        raise
    await confirm(services, key, ticket, task.id)
    try:
        # It runs again from the start: so does its stream.
        await services.events.reset(task.id)
        await services.events.append(task.id, STATUS, {"status": task.status})
        await publish(services, queued(task))
    except RedisUnavailable as exc:
        log.warning("task %s: queue unreachable; the reconciler catches up: %s", task.id, exc)
    return task


async def _read(services: Services, task_id: str, tenant: str) -> Task:
    async with services.db.read_connection() as connection:
        return await store.read_task(connection, task_id, tenant=tenant)
