"""Tasks as a worker sees them: claim, lease, finish, hand back; and what the reconciler looks for.

Every write is guarded so that only the worker holding a task can change it: a worker that lost its
lease (it stalled, another took over) or whose task was cancelled writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.instrumentation import manager_of_class

from aitasks.priority import QueuedTask
from aitasks.store import deadlines, driver
from aitasks.store.conversations import ContextHeader, header_of
from aitasks.store.database import Database
from aitasks.store.finishes import (
    QUEUED,
    Finished,
    NewFile,
    complete_task,
    fail_task,
    next_waiting_turn,
    queued_task,
)
from aitasks.store.models import (
    UNFINISHED_STATUSES,
    Conversation,
    Task,
    TaskStatus,
    Timestamp,
    table_of,
    utcnow,
)
from aitasks.store.webhooks import add_delivery

__all__ = [  # the finishing side lives in `finishes.py`; these names are the worker's from here
    "QUEUED",
    "Finished",
    "NewFile",
    "complete_task",
    "fail_task",
    "next_waiting_turn",
    "queued_task",
]


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
CONVERSATIONS = table_of(Conversation)


def earlier_turn_unfinished() -> Any:
    """Some earlier turn of the task's conversation has not finished (for statements on tasks)."""
    earlier = TASKS.alias("earlier")
    return exists().where(
        earlier.c.conversation_id == TASKS.c.conversation_id,
        earlier.c.turn < TASKS.c.turn,
        earlier.c.status.in_(UNFINISHED_STATUSES),
    )


def _claim_statement(which: Any) -> Any:
    """The claim's UPDATE of the tasks `which` picks, built once with bound parameters: building
    the expression (its NOT EXISTS most of all) cost more Python time per task than running it.
    It returns the tasks and their conversations' context headers, so a chat turn needs no second
    transaction to start."""
    now = bindparam("now", type_=Timestamp)
    conversation = TASKS.c.conversation_id == CONVERSATIONS.c.id

    def header(column: Any) -> Any:
        return select(column).where(conversation).scalar_subquery().label(f"header_{column.key}")

    return (
        update(TASKS)
        .where(
            which,
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


CLAIM = _claim_statement(TASKS.c.id == bindparam("task_id"))
# Many at once (the deliveries of one receive). Rows are locked in the index's order of the ids,
# so two workers claiming overlapping sets (a redelivered entry) wait on each other, never in a
# cycle.
CLAIM_MANY = _claim_statement(TASKS.c.id.in_(bindparam("task_ids", expanding=True)))


# The common case in one autocommitted statement, no BEGIN and COMMIT around it (two round trips
# fewer): a task whose claim has no consequence to write with it, i.e. no callback (whose
# webhook row must be written in the claim's transaction) and not on its first claim past its
# deadline (which must end EXPIRED in the claim's transaction, never seen RUNNING). The others
# are left to `claim_tasks`, which this statement never takes.
def _claim_plain(ids: Any) -> Any:
    return _claim_statement(
        and_(
            ids,
            TASKS.c.callback_url.is_(None),
            or_(
                TASKS.c.expires_at.is_(None),
                TASKS.c.started_at.is_not(None),
                TASKS.c.expires_at > bindparam("now", type_=Timestamp),
            ),
        )
    )


CLAIM_PLAIN = _claim_plain(TASKS.c.id.in_(bindparam("task_ids", expanding=True)))
# The same for asyncpg itself (`store/driver.py`). Its ids stay an `IN` list, one statement per
# number of ids, which PostgreSQL plans anew each time: as one array (`= ANY`) it settled on a
# generic plan, and one made on a small table scanned all of `tasks` for the earlier turns
# (measured at c=50: 15.8 ms and 1,330 blocks a claim of 8, against 2.2 ms and 375).
CLAIM_PLAIN_ON_DRIVER = driver.DriverStatement(CLAIM_PLAIN)
TASK_COLUMNS = tuple(column.key for column in TASKS.c)
NEW_TASK = manager_of_class(Task).new_instance
# Why a claim failed: the task's status, and where it stands in its conversation.
STATES = select(TASKS.c.id, TASKS.c.status, TASKS.c.conversation_id, TASKS.c.turn).where(
    TASKS.c.id.in_(bindparam("task_ids", expanding=True))
)
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


async def claim_deliveries(
    db: Database, task_ids: Sequence[str], *, worker_id: str, lease_seconds: float
) -> list[Claim]:
    """The worker's claim of the tasks of deliveries received together: what `claim_tasks`
    does, with the tasks that need nothing more than the update claimed in one autocommitted
    statement first (see `CLAIM_PLAIN`), and the rest by `claim_tasks`."""
    now = utcnow()
    unique = list(dict.fromkeys(task_ids))
    values = {
        "task_ids": unique,
        "now": now,
        "worker_id": worker_id,
        "lease_until": now + timedelta(seconds=lease_seconds),
    }
    rows = await _claim_plain_on_pool(db, values)
    if rows is None:
        async with db.read_connection() as connection:
            rows = [row._mapping for row in await connection.execute(CLAIM_PLAIN, values)]
    found = {fields["id"]: _claim_of(fields) for fields in rows}
    rest = [task_id for task_id in unique if task_id not in found]
    if rest:
        async with db.session() as session:
            taken = await claim_tasks(
                session, rest, worker_id=worker_id, lease_seconds=lease_seconds
            )
        found.update(zip(rest, taken, strict=True))
    return _in_order(task_ids, found)


async def _claim_plain_on_pool(
    db: Database, values: dict[str, Any]
) -> Sequence[Mapping[Any, Any]] | None:
    """`CLAIM_PLAIN`'s rows on a connection of the read pool (`driver.ReadPool`, PostgreSQL), as
    a poll's read: one autocommitted statement needs no SQLAlchemy connection checked out, and its
    commit is not waited for on disk (`driver.READ_POOL_SETTINGS`: a claim lost in a crash is a
    task run again). None without the pool, or after any error of the driver's (a failed
    statement took nothing), for the caller to claim through SQLAlchemy, which tells an outage
    from the rest (that rare claim is durable, as are `claim_tasks`': their EXPIRED ends and
    webhook rows are seen outside, by clients and receivers, and must not be taken back)."""
    pool = await db.read_pool.get() if db.read_pool is not None else None
    if pool is None:
        return None
    try:
        rows: Sequence[Mapping[Any, Any]] = await driver.fetch_pooled(
            pool, CLAIM_PLAIN_ON_DRIVER, values
        )
    except Exception:
        return None
    return rows


def _in_order(task_ids: Sequence[str], found: dict[str, Claim]) -> list[Claim]:
    """One claim per id, in order; an id given twice is claimed once, the later one BUSY."""
    claims, seen = [], set()
    for task_id in task_ids:
        claims.append(found[task_id] if task_id not in seen else Claim(ClaimOutcome.BUSY))
        seen.add(task_id)
    return claims


def _claim_of(fields: Mapping[Any, Any]) -> Claim:
    """A row the claim's update returned, as the claim of a task to run."""
    # A plain (transient) Task: the worker only reads it, and the ORM's loading cost more than
    # the claim's SQL. Filled in directly, as the ORM's own loading does: `Task(**fields)` sets
    # each column through its instrumentation (63 µs a task, against 2).
    task = NEW_TASK()
    task.__dict__.update((name, fields[name]) for name in TASK_COLUMNS)
    header = header_of(
        fields["header_system_prompt"], fields["header_summary"], fields["header_summary_turn"]
    )
    return Claim(ClaimOutcome.CLAIMED, task, header)


async def claim_task(
    session: AsyncSession, task_id: str, *, worker_id: str, lease_seconds: float
) -> Claim:
    """Take one task for this worker (see `claim_tasks`)."""
    return (
        await claim_tasks(session, [task_id], worker_id=worker_id, lease_seconds=lease_seconds)
    )[0]


async def claim_tasks(
    session: AsyncSession, task_ids: Sequence[str], *, worker_id: str, lease_seconds: float
) -> list[Claim]:
    """Take tasks for this worker with one conditional update, so only one worker ever wins
    each; one `Claim` per id, in order (an id given twice is claimed once, the later one BUSY).

    A task can be taken when it is `PENDING`, or `RUNNING` under a lease that ran out (its worker
    died), and no earlier turn of its conversation is still unfinished.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "now": now,
        "worker_id": worker_id,
        "lease_until": now + timedelta(seconds=lease_seconds),
    }
    unique = list(dict.fromkeys(task_ids))
    async with session.begin():
        connection = await session.connection()
        # The claimed rows come back with the update itself: one statement for all of them.
        if len(unique) == 1:
            rows = (await connection.execute(CLAIM, {**values, "task_id": unique[0]})).all()
        else:
            rows = (await connection.execute(CLAIM_MANY, {**values, "task_ids": unique})).all()
        claimed = {row._mapping["id"]: row for row in rows}
        missed = [task_id for task_id in unique if task_id not in claimed]
        found: dict[str, Claim] = {}
        if missed:
            found = await _why_not(session, connection, missed, values)
        for task_id, row in claimed.items():
            found[task_id] = await _claimed(session, connection, row, now)
    return _in_order(task_ids, found)


async def _why_not(
    session: AsyncSession, connection: AsyncConnection, task_ids: list[str], values: dict[str, Any]
) -> dict[str, Claim]:
    """The claims of tasks the update did not take: finished or gone, held, or waiting on an
    earlier turn (claimed after all when that turn was just finishing)."""
    states = {
        row[0]: row[1:]
        for row in (await connection.execute(STATES, {"task_ids": task_ids})).all()
    }  # fmt: skip
    found: dict[str, Claim] = {}
    for task_id in task_ids:
        state = states.get(task_id)
        if state is None or state[0] not in UNFINISHED_STATUSES:
            found[task_id] = Claim(ClaimOutcome.FINISHED)
            continue
        if state[0] == TaskStatus.RUNNING:
            found[task_id] = Claim(ClaimOutcome.BUSY)
            continue
        # An earlier turn looked unfinished. It may be finishing right now, in a transaction
        # that looked for its next turn before this one was submitted: wait for its row lock
        # and look again, or this turn would wait for the reconciler.
        blocking = {"conversation_id": state[1], "turn": state[2]}
        row = None
        if (await session.execute(EARLIER_UNFINISHED, blocking)).first() is None:
            row = (await connection.execute(CLAIM, {**values, "task_id": task_id})).first()
        if row is None:
            found[task_id] = Claim(ClaimOutcome.WAITING)
        else:
            found[task_id] = await _claimed(session, connection, row, values["now"])
    return found


async def _claimed(
    session: AsyncSession, connection: AsyncConnection, row: Any, now: datetime
) -> Claim:
    """The claim of a row the update took: the run to start, or its expiry when its first claim
    came past its deadline (then it never ran)."""
    claim = _claim_of(row._mapping)
    task = claim.task
    assert task is not None
    if deadlines.overdue(task, now):
        await deadlines.expire_claimed(session, connection, task, now)
        return Claim(ClaimOutcome.EXPIRED, task, None, await next_waiting_turn(connection, task))
    if task.attempts == 1:
        add_delivery(session, task.id, task.callback_url, task.callback_events, TaskStatus.RUNNING)
    return claim


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
