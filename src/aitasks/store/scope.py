"""The tenant scope: every query of a tenant's own rows (tasks, conversations) goes through here.

A caller sees only its tenant's rows, and another tenant's row reads as missing (404, not 403: its
existence is not confirmed). Filtering in one place means no query can forget the filter.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Delete, Select, Update, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter

from aitasks.errors import BatchNotFound, ConversationNotFound, NotFound, TaskNotFound
from aitasks.store.models import Batch, Conversation, Task, table_of

# The tables whose rows belong to a tenant, by a `tenant` column of their own.
Owned = type[Task] | type[Conversation] | type[Batch]
Row = TypeVar("Row", Task, Conversation, Batch)
Statement = TypeVar("Statement", Select[Any], Update, Delete)


def owned_by(entity: Owned, tenant: str | BindParameter[str]) -> ColumnElement[bool]:
    """The condition "the row is the tenant's" (a bound parameter for statements built once)."""
    return table_of(entity).c.tenant == tenant


def scoped(statement: Statement, entity: Owned, *, tenant: str) -> Statement:
    """`statement` (a select, update or delete of `entity`) limited to the tenant's rows."""
    return statement.where(owned_by(entity, tenant))


def one_of(statement: Statement, entity: Owned, row_id: str, *, tenant: str) -> Statement:
    """`statement` limited to the row `row_id`, if it is the tenant's."""
    return scoped(statement.where(table_of(entity).c.id == row_id), entity, tenant=tenant)


def not_found(entity: Owned, row_id: str) -> NotFound:
    """The 404 a missing (or another tenant's) row of `entity` answers with."""
    if entity is Batch:
        return BatchNotFound(row_id)
    return TaskNotFound(row_id) if entity is Task else ConversationNotFound(row_id)


async def get_owned(session: AsyncSession, entity: type[Row], row_id: str, *, tenant: str) -> Row:
    """The tenant's row, freshly read into the session, or the entity's 404."""
    query = one_of(select(entity), entity, row_id, tenant=tenant)
    row: Row | None = (
        await session.scalars(query.execution_options(populate_existing=True))
    ).first()
    if row is None:
        raise not_found(entity, row_id)
    return row


async def require(session: AsyncSession, entity: Owned, row_id: str, *, tenant: str) -> None:
    """Raise the entity's 404 unless the row exists and is the tenant's."""
    query = one_of(select(table_of(entity).c.id), entity, row_id, tenant=tenant)
    if (await session.scalar(query)) is None:
        raise not_found(entity, row_id)
