"""Whether a key may start another task: its daily tokens, then its tasks in flight."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from functools import partial

from aitasks.auth.caller import Caller, KeyInfo
from aitasks.errors import RedisUnavailable
from aitasks.services import Services
from aitasks.store import tasks as store


async def admit(services: Services, key: KeyInfo, task_id: str) -> None:
    """Count `task_id` as in flight for `key`, or raise `RateLimited` naming the limit."""
    await services.limits.check_tokens(key)
    await services.limits.admit(key, task_id, partial(unfinished_tasks, services))


async def unadmit(services: Services, caller: Caller, task_ids: Collection[str]) -> None:
    """These tasks no longer count against the caller's key (never stored, or gone). Best
    effort: a slot missed here is found free by the key's next refused submit."""
    if caller.key is not None:
        with contextlib.suppress(RedisUnavailable):
            await services.limits.release(caller.key.id, task_ids)


async def unfinished_tasks(services: Services, task_ids: list[str]) -> Collection[str]:
    """Which of these tasks have not finished: what a full key's in-flight set is checked
    against, so that ends it missed do not keep refusing it."""
    async with services.db.session() as session:
        return await store.unfinished_of(session, task_ids)
