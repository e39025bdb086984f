"""Finishing tasks: a worker's results and failures, many in one transaction.

Each write is fenced by the claim it comes from (same worker, same attempt, still `RUNNING`): a
worker that lost its lease (it stalled, another took over) or whose task was cancelled writes
nothing for that task, whatever the others of its flush. The rows are locked first, in id order,
so the transaction knows which tasks it holds before it writes (a many-row UPDATE does not say
which of its rows matched) and two flushes never wait on each other in a cycle. The same
transaction records each task's files, its assistant message and its webhook, and finds each
conversation's next waiting turn after the lock, so a turn submitted meanwhile is claimed only
once this one has ended (the claim waits on the lock; see `claims.claim_tasks`).

On PostgreSQL the flush is written by asyncpg itself, in its own transaction, with the very
statements the SQLAlchemy path compiles (`store/driver.py`); that path, SQLite's, writes it again
after any error of the driver's, so an outage or a refused row is reported as everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from aitasks.priority import Placement, QueuedTask
from aitasks.store import driver
from aitasks.store.driver import Driver, DriverStatement, setting
from aitasks.store.models import (
    Message,
    Role,
    StoredFile,
    Task,
    TaskStatus,
    WebhookDelivery,
    table_of,
    utcnow,
)
from aitasks.store.webhooks import add_delivery, delivery_row

TASKS = table_of(Task)
MESSAGES = table_of(Message)
FILES = table_of(StoredFile)
DELIVERIES = table_of(WebhookDelivery)

# The terminal UPDATE; its SET columns come from the parameters, so success and failure share it.
FINISH = update(TASKS).where(
    TASKS.c.id == bindparam("held_id"),
    TASKS.c.worker_id == bindparam("held_worker"),
    TASKS.c.attempts == bindparam("held_attempts"),
    TASKS.c.status == TaskStatus.RUNNING,
)
# The rows a flush may finish, locked in id order: those this worker still runs.
HELD = (
    select(TASKS.c.id, TASKS.c.attempts)
    .where(
        TASKS.c.id.in_(bindparam("ids", expanding=True)),
        TASKS.c.worker_id == bindparam("worker"),
        TASKS.c.status == TaskStatus.RUNNING,
    )
    .order_by(TASKS.c.id)
    .with_for_update()
)
ADD_MESSAGE = insert(MESSAGES)
ADD_FILES = insert(FILES)
ADD_DELIVERY = insert(DELIVERIES)
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
# The waiting turns of several conversations at once, earliest first (a flush's next turns).
WAITING_TURNS = (
    select(TASKS.c.conversation_id, TASKS.c.turn, *QUEUED)
    .where(
        TASKS.c.conversation_id.in_(bindparam("conversations", expanding=True)),
        TASKS.c.status == TaskStatus.PENDING,
    )
    .order_by(TASKS.c.turn)
)
# The same statements for asyncpg itself (`store/driver.py`).
HELD_ON_DRIVER = DriverStatement(HELD)
NEXT_TURN_ON_DRIVER = DriverStatement(NEXT_TURN)
WAITING_TURNS_ON_DRIVER = DriverStatement(WAITING_TURNS)


@dataclass(frozen=True, slots=True)
class Finished:
    """A task's outcome was written; `next_turn` is its conversation's next turn that waited on
    it, to publish now (None when no turn waits)."""

    next_turn: QueuedTask | None = None


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file the worker has already put in storage, to be recorded with the task's result."""

    id: str
    content_type: str
    size: int
    storage_key: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one run came to, to be written: the task's terminal status and the columns it sets,
    and with a success its assistant message and files."""

    task: Task
    status: TaskStatus
    values: dict[str, Any]
    message: dict[str, Any] | None = None
    files: Sequence[NewFile] = field(default_factory=tuple)


def success(
    task: Task,
    *,
    text: str,
    files: Sequence[NewFile] = (),
    usage: dict[str, int] | None = None,
    served_model: str | None = None,
    provider: str | None = None,
    data: dict[str, Any] | None = None,
) -> Outcome:
    """A result (`data`: the reply's tool calls and reasoning, kept in the result and in the
    assistant's message)."""
    result: dict[str, Any] = {"files": [f.id for f in files]} if files else {"text": text}
    result.update(data or {})
    values = {
        "result": result,
        "usage": usage,
        "served_model": served_model or task.model,
        "provider": provider or task.provider,
    }
    message = {
        "conversation_id": task.conversation_id,
        "turn": task.turn,
        "role": Role.ASSISTANT,
        "content": text,
        "files": [f.id for f in files],
        "data": data or None,
        "task_id": task.id,
    }
    return Outcome(task, TaskStatus.SUCCESS, values, message, tuple(files))


def failure(task: Task, *, error_type: str, message: str) -> Outcome:
    error = {"type": error_type, "message": message, "attempts": task.attempts}
    return Outcome(task, TaskStatus.FAILED, {"error": error})


async def finish_tasks(
    session: AsyncSession, outcomes: Sequence[Outcome], *, worker_id: str
) -> list[Finished | None]:
    """Write every outcome this worker still holds in one transaction; for each, what it found
    (None: the claim was lost, nothing was written for it)."""
    now = utcnow()
    async with session.begin():
        connection = await session.connection()
        raw = await driver.driver_of(connection)
        if raw is not None:
            try:
                # asyncpg's own transaction: SQLAlchemy begins its one lazily, at its first
                # statement, so none is open yet and its commit below has nothing to do.
                async with raw.transaction():
                    mine, turns = await _finish_on_driver(raw, outcomes, worker_id, now)
                return _written(outcomes, mine, turns)
            except Exception:
                driver.forget(raw)  # rolled back: written below, where SQLAlchemy tells the rest
        if len(outcomes) == 1:
            # Alone, the fenced UPDATE says by its row count whether the task was held.
            finished = await connection.execute(FINISH, _params(outcomes[0], worker_id, now))
            mine = list(outcomes) if finished.rowcount == 1 else []
        else:
            ids = sorted({o.task.id for o in outcomes})
            held = dict((await connection.execute(HELD, {"ids": ids, "worker": worker_id})).all())
            mine = _still_held(outcomes, held)
            await _update(connection, mine, worker_id, now)
        turns = {}
        if mine:
            await _record(connection, mine, now)
            for o in mine:
                add_delivery(
                    session, o.task.id, o.task.callback_url, o.task.callback_events, o.status
                )
            turns = await _next_turns(connection, [o.task for o in mine])
    return _written(outcomes, mine, turns)


def _still_held(outcomes: Sequence[Outcome], held: Mapping[str, int]) -> list[Outcome]:
    """The outcomes of tasks still held under their claim's attempt (`held`: id -> attempts);
    one per task (a task twice in a flush, which a worker never sends, once)."""
    return list({o.task.id: o for o in outcomes if held.get(o.task.id) == o.task.attempts}.values())


def _written(
    outcomes: Sequence[Outcome], mine: Sequence[Outcome], turns: Mapping[str, QueuedTask]
) -> list[Finished | None]:
    written = {id(o) for o in mine}
    return [Finished(turns.get(o.task.id)) if id(o) in written else None for o in outcomes]


async def _finish_on_driver(
    connection: Driver, outcomes: Sequence[Outcome], worker_id: str, now: datetime
) -> tuple[list[Outcome], dict[str, QueuedTask]]:
    """What `finish_tasks` writes, by the driver itself, in its transaction: the outcomes
    written and the next turns found."""
    if len(outcomes) == 1:
        params = _params(outcomes[0], worker_id, now)
        statement = setting(FINISH, _set_columns(params))
        finished = await driver.execute(connection, statement, params)
        mine = list(outcomes) if finished == "UPDATE 1" else []
    else:
        ids = sorted({o.task.id for o in outcomes})
        looked = {"ids": ids, "worker": worker_id}
        held = {row[0]: row[1] for row in await driver.fetch(connection, HELD_ON_DRIVER, looked)}
        mine = _still_held(outcomes, held)
        for rows in _by_columns(mine, worker_id, now).values():
            await _run_many(connection, setting(FINISH, _set_columns(rows[0])), rows)
    if not mine:
        return [], {}
    files, messages = _files(mine, now), _messages(mine, now)
    if files:
        await _run_many(connection, setting(ADD_FILES, tuple(files[0])), files)
    if messages:
        await _run_many(connection, setting(ADD_MESSAGE, tuple(messages[0])), messages)
    hooks = [
        hook
        for o in mine
        if (hook := delivery_row(o.task.id, o.task.callback_url, o.task.callback_events, o.status))
        is not None
    ]
    if hooks:
        await _run_many(connection, setting(ADD_DELIVERY, tuple(hooks[0])), hooks)
    return mine, await _next_turns_on_driver(connection, [o.task for o in mine])


async def _run_many(
    connection: Driver, statement: DriverStatement, rows: Sequence[dict[str, Any]]
) -> None:
    if len(rows) == 1:
        await driver.execute(connection, statement, rows[0])
    else:
        await driver.execute_many(connection, statement, rows)


def _set_columns(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns FINISH sets with these parameters (the others fence it)."""
    return tuple(name for name in params if not name.startswith("held_"))


async def _next_turns_on_driver(connection: Driver, tasks: Sequence[Task]) -> dict[str, QueuedTask]:
    """`_next_turns`, by the driver."""
    if len(tasks) == 1:
        task = tasks[0]
        looked = {"conversation_id": task.conversation_id, "turn": task.turn}
        found = await driver.fetchrow(connection, NEXT_TURN_ON_DRIVER, looked)
        return {task.id: queued_task(found)} if found is not None else {}
    conversations = sorted({t.conversation_id for t in tasks})
    looked = {"conversations": conversations}
    return _first_waiting(tasks, await driver.fetch(connection, WAITING_TURNS_ON_DRIVER, looked))


def _params(o: Outcome, worker_id: str, now: datetime) -> dict[str, Any]:
    return {
        "held_id": o.task.id,
        "held_worker": worker_id,
        "held_attempts": o.task.attempts,
        "status": o.status,
        "lease_until": None,
        "finished_at": now,
        "updated_at": now,
        **o.values,
    }


def _by_columns(
    outcomes: Sequence[Outcome], worker_id: str, now: datetime
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The terminal updates' parameters, grouped by the columns they set (successes set other
    columns than failures): one statement a group."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for o in outcomes:
        by_columns.setdefault(tuple(sorted(o.values)), []).append(_params(o, worker_id, now))
    return by_columns


async def _update(
    connection: AsyncConnection, outcomes: Sequence[Outcome], worker_id: str, now: datetime
) -> None:
    """The terminal updates of held tasks."""
    for rows in _by_columns(outcomes, worker_id, now).values():
        await connection.execute(FINISH, rows if len(rows) > 1 else rows[0])


def _files(outcomes: Sequence[Outcome], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "id": f.id,
            "task_id": o.task.id,
            "content_type": f.content_type,
            "size": f.size,
            "storage_key": f.storage_key,
            "created_at": now,
        }
        for o in outcomes
        for f in o.files
    ]


def _messages(outcomes: Sequence[Outcome], now: datetime) -> list[dict[str, Any]]:
    return [{**o.message, "created_at": now} for o in outcomes if o.message is not None]


async def _record(connection: AsyncConnection, outcomes: Sequence[Outcome], now: datetime) -> None:
    """The successes' files and assistant messages."""
    files = _files(outcomes, now)
    if files:
        await connection.execute(ADD_FILES, files)
    messages = _messages(outcomes, now)
    if messages:
        await connection.execute(ADD_MESSAGE, messages if len(messages) > 1 else messages[0])


async def _next_turns(connection: AsyncConnection, tasks: Sequence[Task]) -> dict[str, QueuedTask]:
    """Each finished task's next waiting turn (by task id), read after the rows were locked."""
    if len(tasks) == 1:
        waiting = await next_waiting_turn(connection, tasks[0])
        return {tasks[0].id: waiting} if waiting is not None else {}
    conversations = sorted({t.conversation_id for t in tasks})
    rows = (await connection.execute(WAITING_TURNS, {"conversations": conversations})).all()
    return _first_waiting(tasks, rows)


def _first_waiting(tasks: Sequence[Task], rows: Sequence[Any]) -> dict[str, QueuedTask]:
    """Each task's next waiting turn among `WAITING_TURNS`' rows (earliest turn first)."""
    found: dict[str, QueuedTask] = {}
    for task in tasks:
        for row in rows:
            if row[0] == task.conversation_id and row[1] > task.turn:
                found[task.id] = queued_task(row[2:])
                break
    return found


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


async def complete_task(
    session: AsyncSession, task: Task, *, worker_id: str, **result: Any
) -> Finished | None:
    """Write one result (see `success`); None when another worker owns the task now."""
    return (await finish_tasks(session, [success(task, **result)], worker_id=worker_id))[0]


async def fail_task(
    session: AsyncSession, task: Task, *, worker_id: str, error_type: str, message: str
) -> Finished | None:
    """Mark the task `FAILED` with its reason; None when another worker owns it now."""
    outcome = failure(task, error_type=error_type, message=message)
    return (await finish_tasks(session, [outcome], worker_id=worker_id))[0]
