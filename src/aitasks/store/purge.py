"""What retention removes, a small batch at a time: files, finished tasks, webhook deliveries and
conversations older than their cutoffs (`lifecycle/retention.py` drives it).

Each batch is one short transaction that touches rows by primary key, found through an index
(`tasks.finished_at`, `files.created_at`, `webhook_deliveries (status, next_attempt_at)`), so no
statement holds a lock for long and submits and claims go on beside it. Every delete checks its
condition again, so a row that changed since it was found (a task retried, a conversation that
got a new turn) stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.store.models import (
    TERMINAL_STATUSES,
    UNFINISHED_STATUSES,
    Conversation,
    Message,
    StoredFile,
    Task,
    WebhookDelivery,
    table_of,
)

TASKS = table_of(Task)
FILES = table_of(StoredFile)
MESSAGES = table_of(Message)
CONVERSATIONS = table_of(Conversation)
DELIVERIES = table_of(WebhookDelivery)
# A delivery in one of these is done with; a pending one is still the dispatcher's.
SETTLED_DELIVERIES = ("delivered", "failed")


def _file_expired(before: datetime) -> Any:
    return FILES.c.created_at < before


def _task_expired(before: datetime, files_before: datetime | None = None) -> Any:
    """Finished before `before`, with no file of its own left (a task is kept while its files
    are: they are reached through it, and purged by their own setting). With `files_before`,
    files made before it count as gone already (what a purge that removes them first finds)."""
    staying = [FILES.c.task_id == TASKS.c.id]
    if files_before is not None:
        staying.append(FILES.c.created_at >= files_before)
    return (
        TASKS.c.finished_at < before,
        TASKS.c.status.in_([s.value for s in TERMINAL_STATUSES]),
        ~exists().where(*staying),
    )


def _delivery_expired(before: datetime) -> Any:
    # next_attempt_at is when its last attempt was made (plus a claim's lease): an index column.
    return DELIVERIES.c.status.in_(SETTLED_DELIVERIES), DELIVERIES.c.next_attempt_at < before


def _conversation_expired(before: datetime) -> Any:
    """No activity since `before`, and nothing of it still waiting or running."""
    unfinished = exists().where(
        TASKS.c.conversation_id == CONVERSATIONS.c.id,
        TASKS.c.status.in_([s.value for s in UNFINISHED_STATUSES]),
    )
    return CONVERSATIONS.c.updated_at < before, ~unfinished


async def expired_files(
    session: AsyncSession, before: datetime, limit: int
) -> list[tuple[str, str]]:
    """Up to `limit` files made before `before`, oldest first: (id, storage key)."""
    query = (
        select(FILES.c.id, FILES.c.storage_key)
        .where(_file_expired(before))
        .order_by(FILES.c.created_at)
        .limit(limit)
    )
    return [(row.id, row.storage_key) for row in await session.execute(query)]


async def delete_files(session: AsyncSession, ids: Sequence[str]) -> int:
    """Delete these files' rows (their bytes are already gone from the store)."""
    async with session.begin():
        done = await session.execute(delete(FILES).where(FILES.c.id.in_(list(ids))))
    return int(done.rowcount)  # type: ignore[attr-defined]


async def expired_tasks(session: AsyncSession, before: datetime, limit: int) -> list[str]:
    """Up to `limit` ids of tasks that finished before `before` and hold no files."""
    query = (
        select(TASKS.c.id).where(*_task_expired(before)).order_by(TASKS.c.finished_at).limit(limit)
    )
    return list(await session.scalars(query))


async def delete_tasks(session: AsyncSession, ids: Sequence[str], before: datetime) -> int:
    """Delete these tasks, if still expired, with their webhook deliveries and idempotency keys
    (ON DELETE CASCADE). Their messages stay in the conversation's history, no longer linked to
    a task."""
    ids = list(ids)
    async with session.begin():
        await session.execute(
            update(MESSAGES).where(MESSAGES.c.task_id.in_(ids)).values(task_id=None)
        )
        done = await session.execute(
            delete(TASKS).where(TASKS.c.id.in_(ids), *_task_expired(before))
        )
    return int(done.rowcount)  # type: ignore[attr-defined]


async def delete_deliveries(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to `limit` webhook deliveries settled (delivered or given up) before `before`."""
    batch = select(DELIVERIES.c.id).where(*_delivery_expired(before)).limit(limit)
    async with session.begin():
        ids = list(await session.scalars(batch))
        if not ids:
            return 0
        done = await session.execute(delete(DELIVERIES).where(DELIVERIES.c.id.in_(ids)))
    return int(done.rowcount)  # type: ignore[attr-defined]


async def delete_conversations(
    session: AsyncSession, before: datetime, limit: int
) -> tuple[int, list[str]]:
    """Delete up to `limit` conversations idle since `before`, with everything in them; returns
    how many, and the storage keys of their files (for the store to forget, after the commit)."""
    async with session.begin():
        found = select(CONVERSATIONS.c.id).where(*_conversation_expired(before)).limit(limit)
        candidates = list(await session.scalars(found))
        if not candidates:
            return 0, []
        # Lock them as the gateway's delete does, and check again: a submit may have added a turn.
        locked = await session.execute(
            update(CONVERSATIONS)
            .where(CONVERSATIONS.c.id.in_(candidates), *_conversation_expired(before))
            .values(updated_at=CONVERSATIONS.c.updated_at)
            .returning(CONVERSATIONS.c.id)
        )
        ids = list(locked.scalars())
        if not ids:
            return 0, []
        keys = await session.scalars(
            select(FILES.c.storage_key)
            .join(TASKS, FILES.c.task_id == TASKS.c.id)
            .where(TASKS.c.conversation_id.in_(ids))
        )
        file_keys = list(keys)
        await session.execute(delete(CONVERSATIONS).where(CONVERSATIONS.c.id.in_(ids)))
    return len(ids), file_keys


async def count_expired(
    session: AsyncSession,
    *,
    tasks: datetime | None,
    files: datetime | None,
    deliveries: datetime | None,
    conversations: datetime | None,
) -> dict[str, int]:
    """How many rows of each kind are past their cutoff now (what `aitasks purge --dry-run`
    says). A task whose files stay is not counted: it stays with them."""

    async def count(table: Any, *where: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)

    counted = {"files": 0, "tasks": 0, "webhook_deliveries": 0, "conversations": 0}
    if files is not None:
        counted["files"] = await count(FILES, _file_expired(files))
    if tasks is not None:
        counted["tasks"] = await count(TASKS, *_task_expired(tasks, files))
    if deliveries is not None:
        counted["webhook_deliveries"] = await count(DELIVERIES, *_delivery_expired(deliveries))
    if conversations is not None:
        counted["conversations"] = await count(CONVERSATIONS, *_conversation_expired(conversations))
    return counted
