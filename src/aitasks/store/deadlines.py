"""Deadlines in the store: a task not started by its `expires_at` ends `EXPIRED`, without a
provider call, when a worker first claims it or when the reconciler's sweep finds it, whichever
comes first. Both are conditional updates, so a task is expired once, and never one that runs.

A task's start is its first claim (`started_at`): a task handed back at shutdown or taken over
from a dead worker has started, and its deadline no longer applies (its `timeout_seconds` does,
counted from that start; see `worker/deadlines.py`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from aitasks.store.models import Task, TaskStatus, Timestamp, as_utc, table_of
from aitasks.store.webhooks import add_delivery

TASKS = table_of(Task)
EXPIRED_ERROR = {
    "type": "expired",
    "message": "the task was not started before its deadline (expires_after); "
    "the model was not called",
}
# Tasks expired per sweep statement.
SWEEP_BATCH = 500

# Undo a claim just made, as the task's expiry: in the claim's own transaction.
EXPIRE_CLAIMED = (
    update(TASKS)
    .where(TASKS.c.id == bindparam("task_id"))
    .values(
        status=TaskStatus.EXPIRED,
        attempts=TASKS.c.attempts - 1,
        started_at=None,
        worker_id=None,
        lease_until=None,
        error=EXPIRED_ERROR,
        finished_at=bindparam("now", type_=Timestamp),
        updated_at=bindparam("now", type_=Timestamp),
    )
)


def overdue(task: Task, now: datetime) -> bool:
    """Whether a task just claimed for the first time (its `started_at` is this claim's `now`)
    is past its deadline: then it must not run."""
    deadline = as_utc(task.expires_at)
    return deadline is not None and deadline <= now and as_utc(task.started_at) == now


async def expire_claimed(
    session: AsyncSession, connection: AsyncConnection, task: Task, now: datetime
) -> None:
    """End a task whose first claim came past its deadline, in the claim's transaction (so no
    other worker ever sees it `RUNNING`); its webhook goes in the same transaction."""
    await connection.execute(EXPIRE_CLAIMED, {"task_id": task.id, "now": now})
    task.status, task.error, task.finished_at = TaskStatus.EXPIRED, EXPIRED_ERROR, now
    task.started_at, task.worker_id, task.lease_until = None, None, None
    task.attempts -= 1
    add_delivery(session, task.id, task.callback_url, task.callback_events, TaskStatus.EXPIRED)


async def expire_due(session: AsyncSession, now: datetime) -> list[Task]:
    """Expire up to `SWEEP_BATCH` `PENDING` tasks never started whose deadline has passed
    (found through `ix_tasks_unfinished_expires`), with their webhooks: the tasks expired."""
    async with session.begin():
        due = (
            select(Task.id)
            .where(
                # Implied by the status; said so the planner uses `ix_tasks_unfinished_expires`.
                Task.finished_at.is_(None),
                Task.status == TaskStatus.PENDING,
                Task.expires_at <= now,
                Task.started_at.is_(None),
            )
            .order_by(Task.expires_at)
            .limit(SWEEP_BATCH)
        )
        ids = list(await session.scalars(due))
        if not ids:
            return []
        rows = await session.execute(
            update(TASKS)
            .where(TASKS.c.id.in_(ids), TASKS.c.status == TaskStatus.PENDING)
            .values(status=TaskStatus.EXPIRED, error=EXPIRED_ERROR, finished_at=now, updated_at=now)
            .returning(*TASKS.c)
        )
        expired = [Task(**row._mapping) for row in rows]
        for task in expired:
            add_delivery(
                session, task.id, task.callback_url, task.callback_events, TaskStatus.EXPIRED
            )
    return expired
