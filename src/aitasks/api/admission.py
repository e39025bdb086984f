"""Whether a key may start another task: its daily tokens, then its tasks in flight."""

from __future__ import annotations

from collections.abc import Collection

from aitasks.auth.keys import KeyInfo
from aitasks.services import Services
from aitasks.store import tasks as store


async def admit(services: Services, key: KeyInfo, task_id: str) -> None:
    """Count `task_id` as in flight for `key`, or raise `RateLimited` naming the limit."""

    async def unfinished(task_ids: list[str]) -> Collection[str]:
        async with services.db.session() as session:
            return await store.unfinished_of(session, task_ids)

    await services.limits.check_tokens(key)
    await services.limits.admit(key, task_id, unfinished)
