"""Reading one task as a client sees it, without holding a pooled connection afterwards."""

from __future__ import annotations

from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.models import Task


async def read_task(services: Services, task_id: str, *, tenant: str) -> Task:
    """The tenant's task (`TaskNotFound` for another's), read outside any transaction: polls and
    waits read it often, and a wait must not hold a connection while it waits."""
    return await store.read_task_from(services.db, task_id, tenant=tenant)
