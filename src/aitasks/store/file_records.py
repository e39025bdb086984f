"""Files' records (their bytes are the file store's): reading one as its tenant, recording an
upload, and finding the images a request names.

A file is a tenant's through its task (an image a model made, or one a user sent inline with a
turn, which goes when the task does), or by its own `tenant` (an upload, `POST /v1/files`, kept
until retention purges it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.store.models import StoredFile, Task, table_of, utcnow

INSERT_FILE = insert(table_of(StoredFile))


def _tenant_of() -> ColumnElement[Any]:
    """The tenant a file belongs to: its task's, else its own."""
    return func.coalesce(Task.tenant, StoredFile.tenant)


async def get_file(session: AsyncSession, file_id: str, *, tenant: str | None) -> StoredFile | None:
    """The file, if it is the tenant's (any tenant's for None: a signed URL already proved it)."""
    query = select(StoredFile).where(StoredFile.id == file_id)
    if tenant is not None:
        query = query.outerjoin(Task, Task.id == StoredFile.task_id).where(_tenant_of() == tenant)
    return (await session.scalars(query)).first()


async def owned_files(
    session: AsyncSession, file_ids: Sequence[str], *, tenant: str
) -> dict[str, StoredFile]:
    """Those of `file_ids` that are the tenant's files, by id (another's reads as missing)."""
    if not file_ids:
        return {}
    query = (
        select(StoredFile)
        .outerjoin(Task, Task.id == StoredFile.task_id)
        .where(StoredFile.id.in_(list(file_ids)), _tenant_of() == tenant)
    )
    return {f.id: f for f in await session.scalars(query)}


async def add_upload(
    session: AsyncSession, *, file_id: str, tenant: str, content_type: str, size: int, key: str
) -> StoredFile:
    """Record an uploaded file, the tenant's own (its bytes are already in the store)."""
    row = {
        "id": file_id,
        "task_id": None,
        "tenant": tenant,
        "content_type": content_type,
        "size": size,
        "storage_key": key,
        "created_at": utcnow(),
    }
    async with session.begin():
        await session.execute(INSERT_FILE, row)
    return StoredFile(**row)
