"""Every read and write of tasks and conversations: the only place their SQL lives.

Each write is one transaction that starts with its write statement, so that on SQLite the write lock
is taken up front (a read-then-write transaction there can fail instead of waiting for the lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from aitasks.errors import ConversationNotFound, TaskNotFound
from aitasks.routing import ModelSpec
from aitasks.store.models import (
    UNFINISHED_STATUSES,
    Conversation,
    Message,
    Role,
    StoredFile,
    Task,
    TaskStatus,
    new_id,
    utcnow,
)

TITLE_CHARS = 80


async def submit_task(
    session: AsyncSession, *, spec: ModelSpec, prompt: str, conversation_id: str | None
) -> Task:
    """Write the conversation (when new), the user's message and the `PENDING` task, atomically."""
    now = utcnow()
    async with session.begin():
        if conversation_id is None:
            conversation = Conversation(
                id=new_id(), title=prompt[:TITLE_CHARS], turns=1, created_at=now, updated_at=now
            )
            session.add(conversation)
            await session.flush()
            conversation_id, turn = conversation.id, 1
        else:
            # The row lock this takes orders concurrent submits to one conversation.
            taken = await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(turns=Conversation.turns + 1, updated_at=now)
                .returning(Conversation.turns)
            )
            turn_row = taken.first()
            if turn_row is None:
                raise ConversationNotFound(conversation_id)
            turn = turn_row[0]
        task = Task(
            id=new_id(),
            conversation_id=conversation_id,
            turn=turn,
            kind=spec.kind.value,
            model=spec.name,
            queue=spec.queue,
            provider=spec.served_by,
            prompt=prompt,
            status=TaskStatus.PENDING,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        session.add(task)
        await session.flush()
        session.add(
            Message(
                conversation_id=conversation_id,
                turn=turn,
                role=Role.USER,
                content=prompt,
                files=[],
                task_id=task.id,
                created_at=now,
            )
        )
    return task


async def get_task(session: AsyncSession, task_id: str) -> Task:
    task = await session.get(Task, task_id)
    if task is None:
        raise TaskNotFound(task_id)
    return task


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    # Finished, or gone: the delivery is a duplicate or stale and can be dropped.
    FINISHED = "finished"
    # Another worker holds it under a live lease; if that worker dies, a later delivery takes over.
    BUSY = "busy"
    # An earlier turn of its conversation has not finished; that turn's end re-publishes it.
    WAITING = "waiting"


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    task: Task | None = None


def _earlier_turn_unfinished() -> Any:
    earlier = aliased(Task)
    return exists().where(
        earlier.conversation_id == Task.conversation_id,
        earlier.turn < Task.turn,
        earlier.status.in_(UNFINISHED_STATUSES),
    )


async def claim_task(
    session: AsyncSession, task_id: str, *, worker_id: str, lease_seconds: float
) -> Claim:
    """Take a task for this worker with one conditional update, so only one worker ever wins.

    A task can be taken when it is `PENDING`, or `RUNNING` under a lease that ran out (its worker
    died), and no earlier turn of its conversation is still unfinished.
    """
    now = utcnow()
    async with session.begin():
        claimed = await session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                or_(
                    Task.status == TaskStatus.PENDING,
                    and_(Task.status == TaskStatus.RUNNING, Task.lease_until < now),
                ),
                ~_earlier_turn_unfinished(),
            )
            .values(
                status=TaskStatus.RUNNING,
                attempts=Task.attempts + 1,
                worker_id=worker_id,
                lease_until=now + timedelta(seconds=lease_seconds),
                started_at=func.coalesce(Task.started_at, now),
                updated_at=now,
            )
            .returning(Task.id)
        )
        if claimed.first() is not None:
            task = await session.get(Task, task_id, populate_existing=True)
            return Claim(ClaimOutcome.CLAIMED, task)
        status = await session.scalar(select(Task.status).where(Task.id == task_id))
    if status == TaskStatus.PENDING:
        return Claim(ClaimOutcome.WAITING)
    if status == TaskStatus.RUNNING:
        return Claim(ClaimOutcome.BUSY)
    return Claim(ClaimOutcome.FINISHED)


def _held_by(task_id: str, worker_id: str) -> Any:
    """The task is running under this worker's claim (it may have lost it to an expired lease)."""
    return and_(Task.id == task_id, Task.worker_id == worker_id, Task.status == TaskStatus.RUNNING)


async def renew_lease(
    session: AsyncSession, task_id: str, *, worker_id: str, lease_seconds: float
) -> bool:
    """Extend this worker's lease; False when the task is no longer ours."""
    now = utcnow()
    async with session.begin():
        renewed = await session.execute(
            update(Task)
            .where(_held_by(task_id, worker_id))
            .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
            .returning(Task.id)
        )
        return renewed.first() is not None


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file the worker has already put in storage, to be recorded with the task's result."""

    id: str
    content_type: str
    size: int
    storage_key: str


async def complete_task(
    session: AsyncSession,
    task: Task,
    *,
    worker_id: str,
    text: str,
    files: Sequence[NewFile] = (),
) -> bool:
    """Write the result and the assistant's message in one transaction.

    Only the worker that holds the task can complete it; False means the lease was lost and
    another worker owns the task now, so nothing was written.
    """
    now = utcnow()
    result: dict[str, Any] = {"files": [f.id for f in files]} if files else {"text": text}
    async with session.begin():
        if not await _finish(session, task, worker_id, TaskStatus.SUCCESS, result=result):
            return False
        session.add_all(
            StoredFile(
                id=f.id,
                task_id=task.id,
                content_type=f.content_type,
                size=f.size,
                storage_key=f.storage_key,
                created_at=now,
            )
            for f in files
        )
        session.add(
            Message(
                conversation_id=task.conversation_id,
                turn=task.turn,
                role=Role.ASSISTANT,
                content=text,
                files=[f.id for f in files],
                task_id=task.id,
                created_at=now,
            )
        )
    return True


async def fail_task(
    session: AsyncSession, task: Task, *, worker_id: str, error_type: str, message: str
) -> bool:
    """Mark the task `FAILED` with its reason; False when another worker owns it now."""
    error = {"type": error_type, "message": message, "attempts": task.attempts}
    async with session.begin():
        return await _finish(session, task, worker_id, TaskStatus.FAILED, error=error)


async def _finish(
    session: AsyncSession, task: Task, worker_id: str, status: TaskStatus, **values: Any
) -> bool:
    """Move a task this worker holds to a terminal status; False when it no longer holds it."""
    now = utcnow()
    finished = await session.execute(
        update(Task)
        .where(_held_by(task.id, worker_id))
        .values(status=status, lease_until=None, finished_at=now, updated_at=now, **values)
        .returning(Task.id)
    )
    return finished.first() is not None


async def next_waiting_turn(session: AsyncSession, task: Task) -> tuple[str, str] | None:
    """The (id, queue) of the earliest `PENDING` turn after `task` in its conversation, if any."""
    row = (
        await session.execute(
            select(Task.id, Task.queue)
            .where(
                Task.conversation_id == task.conversation_id,
                Task.turn > task.turn,
                Task.status == TaskStatus.PENDING,
            )
            .order_by(Task.turn)
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def unfinished_tasks(session: AsyncSession) -> Sequence[tuple[str, str]]:
    """(id, queue) of every task not yet finished, oldest turn first."""
    rows = await session.execute(
        select(Task.id, Task.queue)
        .where(Task.status.in_(UNFINISHED_STATUSES))
        .order_by(Task.created_at, Task.turn)
    )
    return [(row[0], row[1]) for row in rows]


async def conversation_messages(
    session: AsyncSession, conversation_id: str, *, before_turn: int | None = None
) -> Sequence[Message]:
    """A conversation's messages in order; only the turns before `before_turn` when given."""
    found = await session.scalar(select(Conversation.id).where(Conversation.id == conversation_id))
    if found is None:
        raise ConversationNotFound(conversation_id)
    query = select(Message).where(Message.conversation_id == conversation_id)
    if before_turn is not None:
        query = query.where(Message.turn < before_turn)
    return (await session.scalars(query.order_by(Message.turn, Message.id))).all()


async def get_file(session: AsyncSession, file_id: str) -> StoredFile | None:
    return await session.get(StoredFile, file_id)
