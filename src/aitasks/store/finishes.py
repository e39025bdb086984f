"""Finishing tasks: a worker's results and failures, many in one transaction.

Each write is fenced by the claim it comes from (same worker, same attempt, still `RUNNING`): a
worker that lost its lease (it stalled, another took over) or whose task was cancelled writes
nothing for that task, whatever the others of its flush. The rows are locked first, in id order,
so the transaction knows which tasks it holds before it writes (a many-row UPDATE does not say
which of its rows matched) and two flushes never wait on each other in a cycle. The same
transaction records each task's files, its assistant message and its webhook, and finds each
conversation's next waiting turn after the lock, so a turn submitted meanwhile is claimed only
once this one has ended (the claim waits on the lock; see `claims.claim_tasks`).

On PostgreSQL a flush of any size is two statements sent by asyncpg itself, each committed alone:
one that locks, finishes and records (`flush_sql`, its rows sent as arrays), then the read of the
next turns (`NEXT_TURNS_SQL`); after an error of the driver's the same SQL goes through
SQLAlchemy's connection, so an outage or a refused row is reported as everywhere else. SQLite,
which has neither arrays nor writes in a WITH, writes it statement by statement.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from aitasks.priority import Placement, QueuedTask
from aitasks.store import driver
from aitasks.store.array_rows import array_of, element_type, quote, sent, value_of
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
from aitasks.store.on_driver import OnPostgres, Rows
from aitasks.store.webhooks import add_delivery, delivery_row

log = logging.getLogger(__name__)

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

# ---- PostgreSQL: a flush of any size in one statement, its rows sent as arrays

# `tasks.served_model`'s length.
SERVED_MODEL_CHARS: int = TASKS.c.served_model.type.length  # type: ignore[attr-defined]
# The columns an outcome may set (`Outcome.values`), beside its status and times.
SETTABLE = ("result", "usage", "served_model", "provider", "error")
MESSAGE_COLUMNS = ("conversation_id", "turn", "role", "content", "files", "data", "task_id")
FILE_COLUMNS = ("id", "task_id", "content_type", "size", "storage_key")
DELIVERY_COLUMNS = (
    "id", "task_id", "event", "url", "status", "attempts", "next_attempt_at", "created_at",
)  # fmt: skip


class _Positions:
    """Positional parameters ($1, $2, ...) by name, numbered in the order they are first used."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name: str, sql_type: str) -> str:
        if name not in self.names:
            self.names.append(name)
        return f"${self.names.index(name) + 1}::{sql_type}"


def _array(at: _Positions, name: str, table: Table, column: str) -> str:
    """The array parameter `name` of `column`'s values, for `unnest` (see `array_rows`)."""
    return array_of(at(name, f"{element_type(table, column)}[]"))


def _unnest(at: _Positions, table: Table, columns: Sequence[str], alias: str) -> str:
    """Rows from one array per column (JSON sent as text: `value_of` casts it back), as `alias`."""
    arrays = ", ".join(_array(at, f"{alias}.{column}", table, column) for column in columns)
    return f"unnest({arrays}) AS {alias}({', '.join(quote(c) for c in columns)})"


def _insert_finished(
    at: _Positions, table: Table, columns: Sequence[str], alias: str, *, created_now: bool
) -> str:
    """INSERT of the rows (one array per column) whose task the statement finished."""
    names = [*columns, "created_at"] if created_now else list(columns)
    values = [value_of(table, alias, c) for c in columns]
    values += [at("now", "TIMESTAMP WITH TIME ZONE")] if created_now else []
    return (
        f"INSERT INTO {table.name} ({', '.join(quote(c) for c in names)}) "
        f"SELECT {', '.join(values)} FROM {_unnest(at, table, columns, alias)} "
        f"JOIN finished ON finished.id = {alias}.task_id"
    )


@functools.cache
def flush_sql(messages: bool, files: bool, hooks: bool) -> tuple[str, tuple[str, ...]]:
    """The flush's statement, with the inserts its rows need (an INSERT of no rows still opens
    its table and indexes: a lone finish paid more for the empty ones than for its own), and
    its parameters' names in order. The held rows are locked first, in id
    order (two flushes never wait on each other in a cycle); the UPDATE is fenced again by the
    claim (worker, attempt, `RUNNING`), which PostgreSQL re-checks on a row changed meanwhile;
    the inserts take only the rows of tasks it finished, and it returns their ids."""
    at = _Positions()
    worker = at("worker", "VARCHAR")
    running = f"'{TaskStatus.RUNNING.value}'"
    flags = [f"set_{column}" for column in SETTABLE]
    outcome_columns = ["id", "attempts", "status", *SETTABLE]
    outcome_arrays = ", ".join(
        [
            *(_array(at, f"o.{c}", TASKS, c) for c in outcome_columns),
            *(array_of(at(f"o.{flag}", "BOOLEAN[]")) for flag in flags),
        ]
    )
    now = at("now", "TIMESTAMP WITH TIME ZONE")
    sets = ", ".join(
        f"{quote(c)} = CASE WHEN o.{flag} THEN {value_of(TASKS, 'o', c)} ELSE tasks.{quote(c)} END"
        for c, flag in zip(SETTABLE, flags, strict=True)
    )
    names = ", ".join(quote(c) for c in [*outcome_columns, *flags])
    sql = (
        f"WITH o AS (SELECT * FROM unnest({outcome_arrays}) AS o({names})), "
        f"held AS (SELECT tasks.id FROM tasks JOIN o ON tasks.id = o.id "
        f"WHERE tasks.id = ANY({at('o.id', 'VARCHAR(32)[]')}) AND tasks.worker_id = {worker} "
        f"AND tasks.attempts = o.attempts AND tasks.status = {running} "
        f"ORDER BY tasks.id FOR UPDATE OF tasks), "
        f"finished AS (UPDATE tasks SET status = o.status, lease_until = NULL, "
        f"finished_at = {now}, updated_at = {now}, {sets} FROM o JOIN held ON held.id = o.id "
        f"WHERE tasks.id = o.id AND tasks.worker_id = {worker} AND tasks.attempts = o.attempts "
        f"AND tasks.status = {running} RETURNING tasks.id)"
        + "".join(
            f", {name} AS ({_insert_finished(at, table, columns, alias, created_now=now_made)})"
            for name, wanted, table, columns, alias, now_made in (
                ("m", messages, MESSAGES, MESSAGE_COLUMNS, "mm", True),
                ("f", files, FILES, FILE_COLUMNS, "ff", True),
                ("d", hooks, DELIVERIES, DELIVERY_COLUMNS, "dd", False),
            )
            if wanted
        )
        + " SELECT id FROM finished"
    )
    return sql, tuple(at.names)


# The common flush: replies (messages), no files, no webhooks.
FLUSH_SQL = flush_sql(True, False, False)[0]
# Each finished task's next waiting turn: (task id, `QUEUED`'s columns). By (conversation, turn)
# in the unique index, the first `PENDING` turn after the task's (its arrays as in `_array`).
NEXT_TURNS_SQL = (
    f"SELECT looked.task_id, {', '.join(f'waiting.{c.key}' for c in QUEUED)} "
    "FROM unnest((SELECT $1::VARCHAR[]), (SELECT $2::VARCHAR[]), (SELECT $3::INTEGER[])) "
    "AS looked(task_id, conversation_id, turn) CROSS JOIN LATERAL ("
    f"SELECT {', '.join(c.key for c in QUEUED)} FROM tasks "
    "WHERE tasks.conversation_id = looked.conversation_id AND tasks.turn > looked.turn "
    f"AND tasks.status = '{TaskStatus.PENDING.value}' ORDER BY tasks.turn LIMIT 1) AS waiting"
)


def _flush_args(
    outcomes: Sequence[Outcome], worker_id: str, now: datetime
) -> tuple[str, list[Any]]:
    """The flush's statement for these outcomes (one per task) and its parameters."""
    rows = {
        "mm": _messages(outcomes, now),
        "ff": _files(outcomes, now),
        "dd": [
            hook
            for o in outcomes
            if (hook := delivery_row(o.task.id, o.task.callback_url, o.task.callback_events,
                                     o.status)) is not None
        ],
    }  # fmt: skip
    sql, parameters = flush_sql(bool(rows["mm"]), bool(rows["ff"]), bool(rows["dd"]))
    values: dict[str, Any] = {"worker": worker_id, "now": now}
    columns: dict[str, list[Any]] = {name: [] for name in parameters if "." in name}
    for o in outcomes:
        unknown = o.values.keys() - set(SETTABLE)
        if unknown:
            raise ValueError(f"an outcome cannot set {sorted(unknown)}")
        columns["o.id"].append(o.task.id)
        columns["o.attempts"].append(o.task.attempts)
        columns["o.status"].append(o.status.value)
        for column in SETTABLE:
            given = column in o.values
            value = o.values.get(column)
            columns[f"o.{column}"].append(sent(TASKS, column, value) if given else None)
            columns[f"o.set_{column}"].append(given)
    for alias, table, names in (
        ("mm", MESSAGES, MESSAGE_COLUMNS), ("ff", FILES, FILE_COLUMNS),
        ("dd", DELIVERIES, DELIVERY_COLUMNS),
    ):  # fmt: skip
        if rows[alias]:
            _add_rows(columns, alias, table, rows[alias], names)
    values.update(columns)
    return sql, [values[name] for name in parameters]


def _add_rows(
    columns: dict[str, list[Any]],
    alias: str,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
) -> None:
    for row in rows:
        for name in names:
            value = row[name]
            columns[f"{alias}.{name}"].append(sent(table, name, value))


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
        # What the provider says it served, a label: one longer than its column is cut, not
        # allowed to refuse the result it came with.
        "served_model": (served_model or task.model)[:SERVED_MODEL_CHARS],
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
    """Write every outcome this worker still holds, all or none; for each, what it found (None:
    the claim was lost, nothing was written for it)."""
    now = utcnow()
    async with session.begin():
        connection = await session.connection()
        if connection.dialect.name == "postgresql":
            on_postgres = OnPostgres(connection, await driver.driver_of(connection))
            mine, turns = await _finish_on_postgres(on_postgres, outcomes, worker_id, now)
        else:
            mine, turns = await _finish_stepwise(session, connection, outcomes, worker_id, now)
    return _written(outcomes, mine, turns)


async def _finish_on_postgres(
    on: OnPostgres, outcomes: Sequence[Outcome], worker_id: str, now: datetime
) -> tuple[list[Outcome], dict[str, QueuedTask]]:
    """A flush on PostgreSQL in two statements, whatever its size: `flush_sql` locks and finishes
    the held tasks and inserts their messages, files and webhooks, then `NEXT_TURNS_SQL` reads
    each finished task's next turn. The read is a statement of its own because a statement reads
    as of its start: only one that starts after the lock sees a turn submitted while it waited
    (see `claims.claim_tasks`). On the driver each commits alone, with no BEGIN and COMMIT round
    trips around them; so once the first has committed the flush is written, whatever comes of
    the read (`_next_turns_after_commit`)."""
    unique = list({o.task.id: o for o in outcomes}.values())  # a task twice: the later outcome
    sql, args = _flush_args(unique, worker_id, now)
    finished = {row[0] for row in await on.fetch(sql, args)}
    mine = [o for o in unique if o.task.id in finished]
    if not mine:
        return [], {}
    looked: list[list[Any]] = [[o.task.id for o in mine], [o.task.conversation_id for o in mine],
                               [o.task.turn for o in mine]]  # fmt: skip
    if on.raw is None:  # written in the session's transaction: the read joins it, all or none
        rows = await on.fetch(NEXT_TURNS_SQL, looked)
    else:
        rows = await _next_turns_after_commit(on, looked)
    return mine, {row[0]: queued_task(row[1:]) for row in rows}


async def _next_turns_after_commit(on: OnPostgres, looked: list[list[Any]]) -> Rows:
    """The next turns' read once the finish has committed on the driver: its failure (the
    database cut between the two) is no failure of the flush. Raised, it would have the worker
    write the flush again, find its tasks finished by someone, and drop the replies, their files
    and their tasks' `done`. The turns it did not read are left to the reconciler, which
    publishes again every `PENDING` task no queue entry holds."""
    try:
        return await on.fetch_on_driver(NEXT_TURNS_SQL, looked)
    except Exception as exc:
        log.warning("the next turns of %d finished task(s) were not read: %r", len(looked[0]), exc)
        return []


async def _finish_stepwise(
    session: AsyncSession,
    connection: AsyncConnection,
    outcomes: Sequence[Outcome],
    worker_id: str,
    now: datetime,
) -> tuple[list[Outcome], dict[str, QueuedTask]]:
    """A flush where `flush_sql` cannot run (SQLite: no arrays, no writes in a WITH), statement by
    statement in the session's transaction."""
    if len(outcomes) == 1:
        # Alone, the fenced UPDATE says by its row count whether the task was held.
        finished = await connection.execute(FINISH, _params(outcomes[0], worker_id, now))
        mine = list(outcomes) if finished.rowcount == 1 else []
    else:
        ids = sorted({o.task.id for o in outcomes})
        held = dict((await connection.execute(HELD, {"ids": ids, "worker": worker_id})).all())
        mine = _still_held(outcomes, held)
        await _update(connection, mine, worker_id, now)
    if not mine:
        return [], {}
    await _record(connection, mine, now)
    for o in mine:
        add_delivery(session, o.task.id, o.task.callback_url, o.task.callback_events, o.status)
    return mine, await _next_turns(connection, [o.task for o in mine])


def _still_held(outcomes: Sequence[Outcome], held: Mapping[str, int]) -> list[Outcome]:
    """The outcomes of tasks still held under their claim's attempt (`held`: id -> attempts);
    one per task (a task twice in a flush, which a worker never sends, once)."""
    return list({o.task.id: o for o in outcomes if held.get(o.task.id) == o.task.attempts}.values())


def _written(
    outcomes: Sequence[Outcome], mine: Sequence[Outcome], turns: Mapping[str, QueuedTask]
) -> list[Finished | None]:
    written = {id(o) for o in mine}
    return [Finished(turns.get(o.task.id)) if id(o) in written else None for o in outcomes]


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
