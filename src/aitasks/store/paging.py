"""Keyset pagination, newest first: a page continues after the last row of the one before."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from aitasks.errors import InvalidRequest
from aitasks.store.scope import Owned, one_of, scoped


async def newest_first(
    session: AsyncSession,
    query: Select[Any],
    model: Owned,
    moment: InstrumentedAttribute[Any],
    *,
    tenant: str,
    after: str | None,
    limit: int,
) -> Select[Any]:
    """The tenant's rows of `query`, ordered by (`moment`, id) descending, from just after the row
    whose id is `after`. The cursor is looked up in the same scope, so another tenant's row is an
    unknown cursor rather than a place in this tenant's list."""
    query = scoped(query, model, tenant=tenant)
    if after is not None:
        found = await session.execute(one_of(select(moment), model, after, tenant=tenant))
        cursor = found.first()
        if cursor is None:
            raise InvalidRequest(f"unknown cursor {after!r}", param="after")
        at = cursor[0]
        query = query.where(or_(moment < at, and_(moment == at, model.id < after)))
    return query.order_by(moment.desc(), model.id.desc()).limit(limit)
