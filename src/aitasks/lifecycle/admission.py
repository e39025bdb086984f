"""Whether a key may start another task: its daily tokens, then its tasks in flight.

Admission reserves, under a ticket, before the task is written; the write's outcome then either
confirms the ticket as the task (`confirm`) or gives it back (`unadmit`). A submit's ticket is its
new task's id; a retry's is a fresh one, so a refused retry gives back only what it reserved and
never the slot its task holds while it runs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from functools import partial

from aitasks.auth.caller import Caller, KeyInfo
from aitasks.errors import RedisUnavailable
from aitasks.services import Services
from aitasks.store import tasks as store

log = logging.getLogger(__name__)


async def admit(services: Services, key: KeyInfo, ticket: str, *, tokens: int = 0) -> None:
    """Reserve a slot in flight and `tokens` of the day's quota for `ticket`, or raise
    `RateLimited` naming the limit."""
    await services.limits.admit(key, ticket, partial(unfinished_tasks, services), tokens=tokens)


async def confirm(services: Services, key: KeyInfo | None, ticket: str, task_id: str) -> None:
    """The ticket's task is stored: its reservation is the task's. Best effort: a missed
    confirmation leaves the reservation until its lease lapses, and then the database says the
    task is in flight."""
    if key is None:
        return
    try:
        await services.limits.confirm(key, ticket, task_id)
    except RedisUnavailable as exc:
        log.warning("task %s: its admission not confirmed: %s", task_id, exc.message)


async def unadmit(
    services: Services, caller: Caller, tickets: Collection[str], *, refund: bool = True
) -> None:
    """These tickets or tasks no longer count against the caller's key (never stored, refused,
    or gone); their reserved tokens are given back unless `refund` is False (they may have run).
    Best effort: a slot missed here is found free by the key's next refused submit."""
    if caller.key is not None:
        with contextlib.suppress(RedisUnavailable):
            await services.limits.release(caller.key.id, tickets, refund=refund)


async def unfinished_tasks(services: Services, task_ids: list[str]) -> Collection[str]:
    """Which of these tasks have not finished: what a full key's in-flight set is checked
    against, so that ends it missed do not keep refusing it."""
    async with services.db.session() as session:
        return await store.unfinished_of(session, task_ids)
