"""Batches in the store: accepting one in bulk, reading its progress and its lines, ending it. Their
SQL lives only here.

A batch's lines are written in one transaction of a few statements however many there are: the
batch row, one `UPDATE … RETURNING` per existing conversation the lines continue (its turns
taken at once), then the new conversations, the tasks and the users' messages each as one
multi-row insert. Reading a batch's lines goes a page at a time in line order (`ix_tasks_batch`),
so no caller holds them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from aitasks.errors import ConversationNotFound
from aitasks.priority import Placement
from aitasks.routing import ModelSpec
from aitasks.store.models import (
    UNFINISHED_STATUSES,
    Batch,
    Conversation,
    Message,
    Role,
    StoredFile,
    Task,
    TaskStatus,
    new_id,
    table_of,
    utcnow,
)
from aitasks.store.paging import newest_first
from aitasks.store.scope import get_owned, owned_by, scoped
from aitasks.store.submit_batch import TITLE_CHARS
from aitasks.store.tasks import Owner

TASKS, BATCHES = table_of(Task), table_of(Batch)
# Lines read per page when a batch's results are assembled.
PAGE = 500
# Statuses of a batch still going (its tasks run, or it waits for them to end).
RUNNING = ("in_progress", "cancelling")
CANCELLED_ERROR = {"type": "cancelled", "message": "the batch was cancelled"}


@dataclass(frozen=True, slots=True)
class NewLine:
    """One request of a batch, checked, as its task is stored."""

    index: int
    spec: ModelSpec
    prompt: str
    custom_id: str | None = None
    conversation_id: str | None = None
    params: dict[str, Any] | None = None
    context: list[dict[str, Any]] | None = None


async def conversation_turns(
    session: AsyncSession, ids: Sequence[str], *, tenant: str
) -> dict[str, int]:
    """The tenant's conversations among `ids`, with the turns each has taken (another tenant's
    are missing, as everywhere)."""
    if not ids:
        return {}
    query = select(Conversation.id, Conversation.turns).where(
        Conversation.id.in_(list(set(ids))), owned_by(Conversation, tenant)
    )
    return {row[0]: row[1] for row in await session.execute(query)}


async def insert_batch(
    session: AsyncSession,
    batch: dict[str, Any],
    lines: Sequence[NewLine],
    *,
    owner: Owner,
    placement: Placement,
    expires_at: datetime | None,
    trace_context: str | None = None,
) -> list[tuple[str, str]]:
    """Write the batch (`batch`: its row's values) and a `PENDING` task per line, each as its
    conversation's next turn (a new conversation unless the line names one), with the user's
    message, in one transaction. Returns each line's (task id, queue), in line order.
    `trace_context` is stored with every task (the batch request's, as a link)."""
    now = utcnow()
    conversations: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    async with session.begin():
        await session.execute(insert(BATCHES), {**batch, "created_at": now})
        turns = await _take_turns(session, lines, owner.tenant, now)
        for line in lines:
            task_id = new_id()
            conversation_id, turn = line.conversation_id, 1
            if conversation_id is None:
                conversation_id = new_id()
                conversations.append(
                    {"id": conversation_id, "tenant": owner.tenant, "turns": 1,
                     "title": line.prompt[:TITLE_CHARS], "created_at": now, "updated_at": now}
                )  # fmt: skip
            else:
                turn = turns[conversation_id]
                turns[conversation_id] += 1
            tasks.append(
                {
                    "id": task_id, "tenant": owner.tenant, "api_key_id": owner.api_key_id,
                    "conversation_id": conversation_id, "turn": turn, "kind": line.spec.kind.value,
                    "model": line.spec.name, "queue": line.spec.queue,
                    "provider": line.spec.served_by, "prompt": line.prompt,
                    "status": TaskStatus.PENDING, "attempts": 0, "params": line.params,
                    "context": line.context, "priority": placement.lane.value,
                    "weight": placement.weight, "expires_at": expires_at,
                    "batch_id": batch["id"], "batch_index": line.index,
                    "custom_id": line.custom_id, "created_at": now, "updated_at": now,
                    "trace_context": trace_context,
                }
            )  # fmt: skip
            messages.append(
                {"conversation_id": conversation_id, "turn": turn, "role": Role.USER,
                 "content": line.prompt, "files": [], "task_id": task_id, "created_at": now}
            )  # fmt: skip
        if conversations:
            await session.execute(insert(table_of(Conversation)), conversations)
        await session.execute(insert(TASKS), tasks)
        await session.execute(insert(table_of(Message)), messages)
    return [(row["id"], row["queue"]) for row in tasks]


async def _take_turns(
    session: AsyncSession, lines: Sequence[NewLine], tenant: str, now: datetime
) -> dict[str, int]:
    """Take the turns the lines need of each existing conversation they continue, one update
    per conversation (its row lock orders them after any submit in flight): the first turn of
    each, by conversation."""
    wanted: dict[str, int] = {}
    for line in lines:
        if line.conversation_id is not None:
            wanted[line.conversation_id] = wanted.get(line.conversation_id, 0) + 1
    first: dict[str, int] = {}
    for conversation_id, count in wanted.items():
        taken = await session.execute(
            scoped(update(Conversation), Conversation, tenant=tenant)
            .where(Conversation.id == conversation_id)
            .values(turns=Conversation.turns + count, updated_at=now)
            .returning(Conversation.turns)
        )
        row = taken.first()
        if row is None:  # deleted since the lines were checked
            raise ConversationNotFound(conversation_id, param="requests")
        first[conversation_id] = row[0] - count + 1
    return first


async def insert_failed(session: AsyncSession, batch: dict[str, Any]) -> Batch:
    """Record a batch refused whole (`status` failed, its `errors`): nothing of it queued."""
    now = utcnow()
    row = {**batch, "created_at": now, "failed_at": now, "status": "failed", "completed": 0,
           "failed": 0}  # fmt: skip
    async with session.begin():
        await session.execute(insert(BATCHES), row)
    return Batch(**{("meta" if k == "metadata" else k): v for k, v in row.items()})


async def get_batch(session: AsyncSession, batch_id: str, *, tenant: str) -> Batch:
    """The tenant's batch; another tenant's is as good as missing."""
    return await get_owned(session, Batch, batch_id, tenant=tenant)


async def list_batches(
    session: AsyncSession, *, tenant: str, after: str | None, limit: int
) -> Sequence[Batch]:
    """The tenant's batches newest first; `after` is the last id of the page before."""
    query = await newest_first(
        session, select(Batch), Batch, Batch.created_at, tenant=tenant, after=after, limit=limit
    )
    return (await session.scalars(query)).all()


COUNTS = (
    select(TASKS.c.status, func.count())
    .where(TASKS.c.batch_id == bindparam("batch_id"))
    .group_by(TASKS.c.status)
)
UNFINISHED = select(
    exists().where(
        TASKS.c.batch_id == bindparam("batch_id"), TASKS.c.status.in_(UNFINISHED_STATUSES)
    )
)


async def counts(executor: AsyncSession | AsyncConnection, batch_id: str) -> dict[str, int]:
    """How many of the batch's tasks are in each status now."""
    rows = await executor.execute(COUNTS, {"batch_id": batch_id})
    return {str(status): int(n) for status, n in rows}


async def lines(connection: AsyncConnection, batch_id: str, after: int, limit: int) -> list[Task]:
    """The batch's tasks from line `after` + 1 on, in line order, at most `limit`."""
    query = (
        select(TASKS)
        .where(TASKS.c.batch_id == batch_id, TASKS.c.batch_index > after)
        .order_by(TASKS.c.batch_index)
        .limit(limit)
    )
    return [Task(**row._mapping) for row in await connection.execute(query)]


async def still_going(session: AsyncSession) -> list[Batch]:
    """Every batch whose tasks may still run (in progress, or being cancelled)."""
    async with session.begin():
        rows = await session.scalars(select(Batch).where(Batch.status.in_(RUNNING)))
        return list(rows.all())


async def going_of(session: AsyncSession, *, tenant: str, limit: int) -> list[Batch]:
    """The tenant's batches still running, newest first."""
    query = scoped(select(Batch).where(Batch.status.in_(RUNNING)), Batch, tenant=tenant).order_by(
        Batch.created_at.desc()
    )
    return list((await session.scalars(query.limit(limit))).all())


async def unfinished(session: AsyncSession, batch_id: str) -> bool:
    """Whether some task of the batch has not ended."""
    async with session.begin():
        return bool(await session.scalar(UNFINISHED, {"batch_id": batch_id}))


async def move(
    session: AsyncSession, batch_id: str, from_statuses: Sequence[str], **values: Any
) -> bool:
    """Change a batch still in one of `from_statuses` (False when it is not: another process
    moved it first)."""
    async with session.begin():
        moved = await session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status.in_(list(from_statuses)))
            .values(**values)
            .returning(Batch.id)
        )
        return moved.first() is not None


async def cancel_tasks(session: AsyncSession, batch_id: str) -> list[str]:
    """Cancel every unfinished task of the batch; the ids of those that were running (their
    workers are told to stop)."""
    now = utcnow()
    async with session.begin():
        running = list(
            await session.scalars(
                select(Task.id).where(Task.batch_id == batch_id, Task.status == TaskStatus.RUNNING)
            )
        )
        await session.execute(
            update(Task)
            .where(Task.batch_id == batch_id, Task.status.in_(UNFINISHED_STATUSES))
            .values(
                status=TaskStatus.CANCELLED,
                error=CANCELLED_ERROR,
                lease_until=None,
                finished_at=now,
                updated_at=now,
            )
        )
    return running


async def add_file(
    session: AsyncSession,
    *,
    file_id: str,
    tenant: str,
    purpose: str,
    size: int,
    name: str,
    key: str,
) -> StoredFile:
    """Record a tenant's file: a batch's input (its bytes under `key` in the file store), or a
    batch's output or error file (made from its tasks when read: nothing is stored under its
    `key`, which is its own all the same, so removing it with the others is harmless)."""
    row = {
        "id": file_id, "task_id": None, "tenant": tenant, "content_type": "application/jsonl",
        "size": size, "storage_key": key, "purpose": purpose, "filename": name,
        "created_at": utcnow(),
    }  # fmt: skip
    async with session.begin():
        await session.execute(insert(table_of(StoredFile)), row)
    return StoredFile(**row)


async def list_files(session: AsyncSession, *, tenant: str, limit: int) -> Sequence[StoredFile]:
    """The tenant's batch files (inputs, outputs, errors), newest first."""
    query = (
        select(StoredFile)
        .where(StoredFile.tenant == tenant, StoredFile.purpose.like("batch%"))
        .order_by(StoredFile.created_at.desc())
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def delete_file(session: AsyncSession, file_id: str) -> None:
    """Forget a file's record (its bytes, if any, are the caller's to remove)."""
    async with session.begin():
        await session.execute(delete(StoredFile).where(StoredFile.id == file_id))


async def batch_of_file(session: AsyncSession, file_id: str, *, tenant: str) -> Batch | None:
    """The tenant's batch whose output or error file `file_id` is."""
    query = scoped(
        select(Batch).where((Batch.output_file_id == file_id) | (Batch.error_file_id == file_id)),
        Batch,
        tenant=tenant,
    )
    return (await session.scalars(query)).first()
