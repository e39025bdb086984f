"""Keyset pagination, newest first: a page continues after the last row of the one before."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from aitasks.errors import InvalidRequest


async def newest_first(
    session: AsyncSession,
    query: Select[Any],
    model: Any,
    moment: InstrumentedAttribute[Any],
    *,
    after: str | None,
    limit: int,
) -> Select[Any]:
    """`query` ordered by (`moment`, id) descending, from just after the row whose id is `after`."""
    if after is not None:
        cursor = await session.get(model, after)
        if cursor is None:
            raise InvalidRequest(f"unknown cursor {after!r}", param="after")
        at = getattr(cursor, moment.key)
        query = query.where(or_(moment < at, and_(moment == at, model.id < cursor.id)))
    return query.order_by(moment.desc(), model.id.desc()).limit(limit)
