"""Idempotency keys' upkeep: how long they are honoured, and forgetting the old ones."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.store.models import IdempotencyKey, utcnow

# Idempotency keys are honoured for at least this long.
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)


async def purge_idempotency_keys(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Forget idempotency keys older than twice their promised life."""
    cutoff = (now or utcnow()) - 2 * IDEMPOTENCY_KEY_TTL
    async with session.begin():
        purged = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)
        )
    return int(getattr(purged, "rowcount", 0) or 0)
