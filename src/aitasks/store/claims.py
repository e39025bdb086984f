"""Tasks as a worker sees them: claim, lease, finish, hand back; and what the reconciler looks for.

Every write is guarded so that only the worker holding a task can change it: a worker that lost its
lease (it stalled, another took over) or whose task was cancelled writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from aitasks.priority import Placement, QueuedTask
from aitasks.store import deadlines
from aitasks.store.conversations import ContextHeader, header_of
from aitasks.store.models import (
    UNFINISHED_STATUSES,
    Conversation,
    Message,
    Role,
    StoredFile,
    Task,
    TaskStatus,
    Timestamp,
    table_of,
    utcnow,
)
from aitasks.store.webhooks import add_delivery


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    # Finished, or gone: the delivery is a duplicate or stale and can be dropped.
    FINISHED = "finished"
    # Another worker holds it under a live lease; if that worker dies, a later delivery takes over.
    BUSY = "busy"
    # An earlier turn of its conversation has not finished; that turn's end re-publishes it.
    WAITING = "waiting"
    # Past its deadline before it ever started: ended EXPIRED instead (`store/deadlines.py`).
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    task: Task | None = None
    # What the claimed task's context starts with, read by the claim itself (see `context_header`).
    header: ContextHeader | None = None
    # EXPIRED: the conversation's next turn, which waited on it.
    next_turn: QueuedTask | None = None


# The worker's hot-path statements run as Core on the session's connection: the ORM's unit of
# work (flush, identity map, bulk-update evaluation) cost more CPU per task than the SQL itself.
TASKS = table_of(Task)
MESSAGES = table_of(Message)
FILES = table_of(StoredFile)
CONVERSATIONS = table_of(Conversation)


def earlier_turn_unfinished() -> Any:
    """Some earlier turn of the task's conversation has not finished (for statements on tasks)."""
    earlier = TASKS.alias("earlier")
    return exists().where(
        earlier.c.conversation_id == TASKS.c.conversation_id,
        earlier.c.turn < TASKS.c.turn,
        earlier.c.status.in_(UNFINISHED_STATUSES),
    )


def _claim_statement() -> Any:
    """The claim's UPDATE, built once with bound parameters: building the expression (its NOT
    EXISTS most of all) cost more Python time per task than running it. It returns the task and
    its conversation's context header, so a chat turn needs no second transaction to start."""
    now = bindparam("now", type_=Timestamp)
    conversation = TASKS.c.conversation_id == CONVERSATIONS.c.id

    def header(column: Any) -> Any:
        return select(column).where(conversation).scalar_subquery().label(f"header_{column.key}")

    return (
        update(TASKS)
        .where(
            TASKS.c.id == bindparam("task_id"),
            or_(
                TASKS.c.status == TaskStatus.PENDING,
                and_(TASKS.c.status == TaskStatus.RUNNING, TASKS.c.lease_until < now),
            ),
            ~earlier_turn_unfinished(),
        )
        .values(
            status=TaskStatus.RUNNING,
            attempts=TASKS.c.attempts + 1,
            worker_id=bindparam("worker_id"),
            lease_until=bindparam("lease_until", type_=Timestamp),
            started_at=func.coalesce(TASKS.c.started_at, now),
            updated_at=now,
        )
        .returning(
            *TASKS.c,
            header(CONVERSATIONS.c.system_prompt),
            header(CONVERSATIONS.c.summary),
            header(CONVERSATIONS.c.summary_turn),
        )
    )


CLAIM = _claim_statement()
TASK_COLUMNS = tuple(column.key for column in TASKS.c)
# Why a claim failed: the task's status, and where it stands in its conversation.
STATE = select(Task.status, Task.conversation_id, Task.turn).where(Task.id == bindparam("task_id"))
# An earlier turn still unfinished; FOR SHARE waits for a transaction finishing one (PostgreSQL;
# SQLite has one writer at a time, so there is none to wait for).
EARLIER_UNFINISHED = (
    select(Task.id)
    .where(
        Task.conversation_id == bindparam("conversation_id"),
        Task.turn < bindparam("turn"),
        Task.status.in_(UNFINISHED_STATUSES),
    )
    .limit(1)
    .with_for_update(read=True)
)


# The terminal UPDATE; its SET columns come from the parameters, so success and failure share it.
FINISH = update(TASKS).where(
    TASKS.c.id == bindparam("held_id"),
    TASKS.c.worker_id == bindparam("held_worker"),
    TASKS.c.attempts == bindparam("held_attempts"),
    TASKS.c.status == TaskStatus.RUNNING,
)
ADD_MESSAGE = insert(MESSAGES)
ADD_FILES = insert(FILES)
# What a task is published with: `QueuedTask`'s fields.
QUEUED = (TASKS.c.id, TASKS.c.queue, TASKS.c.priority, TASKS.c.tenant, TASKS.c.weight)
NEXT_TURN = (
    select(*QUEUED)
    .where(
        TASKS.c.conversation_id == bindparam("conversation_id"),
        TASKS.c.turn > bindparam("turn"),
        TASKS.c.status == TaskStatus.PENDING,
    )
    .order_by(TASKS.c.turn)
    .limit(1)
)


@dataclass(frozen=True, slots=True)
class Finished:
    """A task's outcome was written; `next_turn` is its conversation's next turn that waited on
    it, to publish now (None when no turn waits)."""

    next_turn: QueuedTask | None = None


async def claim_task(
    session: AsyncSession, task_id: str, *, worker_id: str, lease_seconds: float
) -> Claim:
    """Take a task for this worker with one conditional update, so only one worker ever wins.

    A task can be taken when it is `PENDING`, or `RUNNING` under a lease that ran out (its worker
    died), and no earlier turn of its conversation is still unfinished.
    """
    now = utcnow()
    values = {
        "task_id": task_id,
        "now": now,
        "worker_id": worker_id,
        "lease_until": now + timedelta(seconds=lease_seconds),
    }
    async with session.begin():
        connection = await session.connection()
        # The claimed row comes back with the update itself: one statement, not two.
        row = (await connection.execute(CLAIM, values)).first()
        if row is None:
            found = (await session.execute(STATE, {"task_id": task_id})).first()
            if found is None or found[0] not in UNFINISHED_STATUSES:
                return Claim(ClaimOutcome.FINISHED)
            if found[0] == TaskStatus.RUNNING:
                return Claim(ClaimOutcome.BUSY)
            # An earlier turn looked unfinished. It may be finishing right now, in a transaction
            # that looked for its next turn before this one was submitted: wait for its row lock
            # and look again, or this turn would wait for the reconciler.
            blocking = {"conversation_id": found[1], "turn": found[2]}
            if (await session.execute(EARLIER_UNFINISHED, blocking)).first() is not None:
                return Claim(ClaimOutcome.WAITING)
            row = (await connection.execute(CLAIM, values)).first()
            if row is None:
                return Claim(ClaimOutcome.WAITING)
        fields = row._mapping
        # A plain (transient) Task: the worker only reads it, and the ORM's loading cost more
        # than the claim's SQL.
        task = Task(**{name: fields[name] for name in TASK_COLUMNS})
        if deadlines.overdue(task, now):
            await deadlines.expire_claimed(session, connection, task, now)
            return Claim(ClaimOutcome.EXPIRED, task, None, await next_waiting_turn(session, task))
        if task.attempts == 1:
            add_delivery(
                session, task.id, task.callback_url, task.callback_events, TaskStatus.RUNNING
            )
        header = header_of(
            fields["header_system_prompt"], fields["header_summary"], fields["header_summary_turn"]
        )
        return Claim(ClaimOutcome.CLAIMED, task, header)


def _held_by(task: Task, worker_id: str) -> Any:
    """The task is still running under this very claim: same worker and same attempt, so a run
    that lost its lease (even to the same worker claiming it again) cannot write."""
    return and_(
        Task.id == task.id,
        Task.worker_id == worker_id,
        Task.attempts == task.attempts,
        Task.status == TaskStatus.RUNNING,
    )


async def renew_lease(
    session: AsyncSession, task: Task, *, worker_id: str, lease_seconds: float
) -> bool:
    """Extend this worker's lease; False when the task is no longer ours."""
    now = utcnow()
    async with session.begin():
        renewed = await session.execute(
            update(Task)
            .where(_held_by(task, worker_id))
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
    usage: dict[str, int] | None = None,
    served_model: str | None = None,
    provider: str | None = None,
    data: dict[str, Any] | None = None,
) -> Finished | None:
    """Write the result and the assistant's message in one transaction (`data`: the reply's tool
    calls and reasoning, kept in both).

    Only the worker that holds the task can complete it; None means the lease was lost and
    another worker owns the task now, so nothing was written.
    """
    now = utcnow()
    result: dict[str, Any] = {"files": [f.id for f in files]} if files else {"text": text}
    result.update(data or {})
    async with session.begin():
        values = {
            "result": result,
            "usage": usage,
            "served_model": served_model or task.model,
            "provider": provider or task.provider,
        }
        connection = await session.connection()
        if not await _finish(session, connection, task, worker_id, TaskStatus.SUCCESS, values):
            return None
        if files:
            await connection.execute(
                ADD_FILES,
                [
                    {
                        "id": f.id,
                        "task_id": task.id,
                        "content_type": f.content_type,
                        "size": f.size,
                        "storage_key": f.storage_key,
                        "created_at": now,
                    }
                    for f in files
                ],
            )
        await connection.execute(
            ADD_MESSAGE,
            {
                "conversation_id": task.conversation_id,
                "turn": task.turn,
                "role": Role.ASSISTANT,
                "content": text,
                "files": [f.id for f in files],
                "data": data or None,
                "task_id": task.id,
                "created_at": now,
            },
        )
        return await _next_turn(connection, task)


async def fail_task(
    session: AsyncSession, task: Task, *, worker_id: str, error_type: str, message: str
) -> Finished | None:
    """Mark the task `FAILED` with its reason; None when another worker owns it now."""
    error = {"type": error_type, "message": message, "attempts": task.attempts}
    async with session.begin():
        connection = await session.connection()
        if not await _finish(
            session, connection, task, worker_id, TaskStatus.FAILED, {"error": error}
        ):
            return None
        return await _next_turn(connection, task)


async def begin_attempt(
    session: AsyncSession, task: Task, *, worker_id: str, lease_seconds: float
) -> bool:
    """Count another attempt at a task this worker holds (a retry after a provider error)."""
    now = utcnow()
    async with session.begin():
        counted = await session.execute(
            update(Task)
            .where(_held_by(task, worker_id))
            .values(
                attempts=Task.attempts + 1,
                lease_until=now + timedelta(seconds=lease_seconds),
                updated_at=now,
            )
            .returning(Task.attempts)
        )
        row = counted.first()
    if row is None:
        return False
    task.attempts = row[0]
    return True


async def release_task(session: AsyncSession, task: Task, *, worker_id: str) -> bool:
    """Hand a task this worker holds back to `PENDING` (the worker is shutting down)."""
    async with session.begin():
        released = await session.execute(
            update(Task)
            .where(_held_by(task, worker_id))
            .values(
                status=TaskStatus.PENDING, worker_id=None, lease_until=None, updated_at=utcnow()
            )
            .returning(Task.id)
        )
        return released.first() is not None


async def _finish(
    session: AsyncSession,
    connection: AsyncConnection,
    task: Task,
    worker_id: str,
    status: TaskStatus,
    values: dict[str, Any],
) -> bool:
    """Move a task this worker holds to a terminal status; False when it no longer holds it."""
    now = utcnow()
    finished = await connection.execute(
        FINISH,
        {
            "held_id": task.id,
            "held_worker": worker_id,
            "held_attempts": task.attempts,
            "status": status,
            "lease_until": None,
            "finished_at": now,
            "updated_at": now,
            **values,
        },
    )
    if finished.rowcount != 1:
        return False
    add_delivery(session, task.id, task.callback_url, task.callback_events, status)
    return True


def queued_task(row: Any) -> QueuedTask:
    """A row of `QUEUED`'s columns as the task to publish."""
    return QueuedTask(row[0], row[1], Placement.of(row[2], row[3], row[4]))


async def next_waiting_turn(
    executor: AsyncSession | AsyncConnection, task: Task
) -> QueuedTask | None:
    """The earliest `PENDING` turn after `task` in its conversation, if any: the one turn that
    waits on it. Read by the finishing transaction, and after a cancel."""
    looked = {"conversation_id": task.conversation_id, "turn": task.turn}
    row = (await executor.execute(NEXT_TURN, looked)).first()
    return queued_task(row) if row is not None else None


async def _next_turn(connection: AsyncConnection, task: Task) -> Finished:
    """The conversation's next turn waiting on this one, read in the finishing transaction.

    Its snapshot is taken after this transaction locked the finished task's row, so a turn
    submitted too late to be seen here is claimed after that lock is released: its claim sees
    this turn finished, or waits for it (`claim_task`'s second look).
    """
    return Finished(await next_waiting_turn(connection, task))


async def unfinished_tasks(session: AsyncSession) -> Sequence[tuple[str, str]]:
    """(id, queue) of every task not yet finished, oldest first."""
    rows = await session.execute(
        select(Task.id, Task.queue)
        .where(Task.status.in_(UNFINISHED_STATUSES))
        .order_by(Task.created_at, Task.turn)
    )
    return [(row[0], row[1]) for row in rows]
