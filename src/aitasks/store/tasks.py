"""Tasks as the gateway sees them: submit, read, list, cancel, retry. Their SQL lives only here.

Each write is one transaction that starts with its write statement, so that on SQLite the write lock
is taken up front (a read-then-write transaction there can fail instead of waiting for the lock).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, inspect, null, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import configure_mappers

from aitasks.errors import (
    Conflict,
    ConversationNotFound,
    IdempotencyKeyReused,
    LimitExceeded,
    TaskNotFound,
)
from aitasks.routing import ModelSpec
from aitasks.store import driver
from aitasks.store.database import Database, database_boundary
from aitasks.store.file_records import INSERT_FILE
from aitasks.store.models import (
    ERRORED_STATUSES,
    UNFINISHED_STATUSES,
    Conversation,
    IdempotencyKey,
    Message,
    Role,
    Task,
    TaskStatus,
    new_id,
    table_of,
    utcnow,
)
from aitasks.store.paging import newest_first
from aitasks.store.scope import get_owned, one_of, owned_by
from aitasks.store.submit_batch import TITLE_CHARS, FirstTurn, write_first_turn
from aitasks.store.webhooks import add_delivery

INSERT_CONVERSATION = insert(table_of(Conversation))
INSERT_TASK = insert(table_of(Task))
INSERT_MESSAGE = insert(table_of(Message))
INSERT_IDEMPOTENCY_KEY = insert(table_of(IdempotencyKey))

# The task's own columns a submit sets: the keys of `submit_task`'s values.
TASK_FIELDS = (
    "id", "tenant", "api_key_id", "callback_url", "callback_events", "kind", "model", "queue",
    "provider", "prompt", "status", "attempts", "params", "context", "trace_context", "input",
    "priority", "weight", "expires_at", "timeout_seconds", "response",
)  # fmt: skip
UNSCHEDULED = {"priority": "default", "weight": 1, "expires_at": None, "timeout_seconds": None}


@dataclass(frozen=True, slots=True)
class Owner:
    """Who submits: the tenant, and the API key (None while auth is off)."""

    tenant: str
    api_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Callback:
    """Where to POST the task's webhooks, and the events asked for beyond the terminal ones."""

    url: str
    events: list[str]


@dataclass(frozen=True, slots=True)
class Submission:
    task: Task
    # False when an `Idempotency-Key` matched an earlier submit, whose task this is.
    created: bool


async def submit_task(
    session: AsyncSession,
    *,
    owner: Owner,
    spec: ModelSpec,
    prompt: str,
    conversation_id: str | None,
    task_id: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str = "",
    params: dict[str, Any] | None = None,
    context: list[dict[str, Any]] | None = None,
    callback: Callback | None = None,
    max_turns: int | None = None,
    trace_context: str | None = None,
    turn_input: dict[str, Any] | None = None,
    files: Sequence[dict[str, Any]] = (),
    scheduling: Mapping[str, Any] | None = None,
    response: dict[str, Any] | None = None,
) -> Submission:
    """Write the conversation (when new), the user's message and the `PENDING` task, atomically.

    With an idempotency key, a repeat of the same request returns the first one's task instead:
    the key's row collides and the transaction rolls back. (Callers that must know before
    writing, such as the gateway's queue-depth check, look with `replay` first.)
    `trace_context` is the submit's traceparent, kept with the task (None when not traced).
    `turn_input` is the turn's structure beyond its text (`providers.messages`); `files` are the
    records of images sent with it (their bytes already stored), which go with the task.
    `scheduling` holds its lane, weight, deadline and run bound (`lifecycle/placement.py`);
    `response` what a Responses API task keeps beside (`Task.response`).
    """
    try:
        values = task_values(
            owner, spec, prompt, task_id=task_id, params=params, context=context,
            callback=callback, trace_context=trace_context, turn_input=turn_input,
            scheduling=scheduling, response=response,
        )  # fmt: skip
        task = await _insert_task(
            session, values, conversation_id, idempotency_key, request_hash, max_turns, files
        )
    except IntegrityError:
        # Only a submit with the same key can collide: return the task it made.
        await session.rollback()
        if idempotency_key is None:
            raise
        earlier = await replay(session, idempotency_key, request_hash, tenant=owner.tenant)
        if earlier is None:
            raise
        return Submission(earlier, created=False)
    return Submission(task, created=True)


def task_values(
    owner: Owner,
    spec: ModelSpec,
    prompt: str,
    *,
    task_id: str | None = None,
    params: dict[str, Any] | None = None,
    context: list[dict[str, Any]] | None = None,
    callback: Callback | None = None,
    trace_context: str | None = None,
    turn_input: dict[str, Any] | None = None,
    scheduling: Mapping[str, Any] | None = None,
    response: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new task's own columns (`TASK_FIELDS`), as `submit_task` writes them."""
    return {
        "id": task_id or new_id(),
        "tenant": owner.tenant,
        "api_key_id": owner.api_key_id,
        "callback_url": callback.url if callback else None,
        "callback_events": callback.events if callback else None,
        "kind": spec.kind.value,
        "model": spec.name,
        "queue": spec.queue,
        "provider": spec.served_by,
        "prompt": prompt,
        "status": TaskStatus.PENDING,
        "attempts": 0,
        "params": params,
        "context": context,
        "trace_context": trace_context,
        "input": turn_input,
        "response": response,
        **{**UNSCHEDULED, **(scheduling or {})},
    }


def groups_first_turns(db: Database) -> bool:
    """Whether a new conversation's first turn on `db` is written by the group commit
    (`submit_batch`): on PostgreSQL; SQLite has one writer anyway."""
    return db.engine.dialect.name == "postgresql"


async def submit_first_turn(
    db: Database,
    values: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> Submission:
    """`submit_task` of a new conversation's first turn without images (`values`: its
    `task_values`) where `groups_first_turns(db)`: written by the group commit on the engine,
    with no session of its own (opening and closing one cost a submit more CPU than the rest of
    its store work); a session is opened only to answer an idempotent repeat."""
    with database_boundary():
        try:
            task = await _insert_first_turn(
                db.engine, values, utcnow(), idempotency_key, request_hash
            )
        except IntegrityError:
            if idempotency_key is None:
                raise
            async with db.sessions() as session:
                earlier = await replay(
                    session, idempotency_key, request_hash, tenant=values["tenant"]
                )
            if earlier is None:
                raise
            return Submission(earlier, created=False)
    return Submission(task, created=True)


async def replay(session: AsyncSession, key: str, request_hash: str, *, tenant: str) -> Task | None:
    """The task an earlier request of this tenant with this idempotency key made, if any; a key
    reused with another request is refused. Keys are the client's own, scoped by the composite
    primary key (tenant, key): two tenants may choose the same one, and no tenant's key can be
    spelled as another's. The task is loaded through the tenant scope all the same."""
    async with session.begin():
        stored = await session.get(IdempotencyKey, (tenant, key))
        if stored is None:
            return None
        if stored.request_hash != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request", param="Idempotency-Key"
            )
        earlier = one_of(select(Task), Task, stored.task_id, tenant=tenant)
        return (await session.scalars(earlier)).first()


async def _insert_task(
    session: AsyncSession,
    values: dict[str, Any],
    conversation_id: str | None,
    idempotency_key: str | None,
    request_hash: str,
    max_turns: int | None,
    files: Sequence[dict[str, Any]] = (),
) -> Task:
    """Insert the task (`values`, its columns) as its conversation's next turn, with the user's
    message. A conversation of another tenant is as good as missing.

    Core INSERTs, not the ORM's unit of work: the submit path is hot, and flushing three new
    objects cost more Python time than the statements themselves.
    """
    now = utcnow()
    prompt, tenant = values["prompt"], values["tenant"]
    engine = session.bind
    grouped = isinstance(engine, AsyncEngine) and engine.dialect.name == "postgresql"
    if conversation_id is None and not files and grouped:
        assert isinstance(engine, AsyncEngine)
        return await _insert_first_turn(engine, values, now, idempotency_key, request_hash)
    async with session.begin():
        if conversation_id is None:
            conversation_id, turn = new_id(), 1
            await session.execute(
                INSERT_CONVERSATION,
                {
                    "id": conversation_id,
                    "tenant": tenant,
                    "title": prompt[:TITLE_CHARS],
                    "turns": 1,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        else:
            # The row lock this takes orders concurrent submits to one conversation.
            taken = await session.execute(
                one_of(update(Conversation), Conversation, conversation_id, tenant=tenant)
                .values(turns=Conversation.turns + 1, updated_at=now)
                .returning(Conversation.turns)
            )
            turn_row = taken.first()
            if turn_row is None:
                raise ConversationNotFound(conversation_id)
            turn = turn_row[0]
            if max_turns is not None and turn > max_turns:
                # Raised inside the transaction: the turn taken above is rolled back.
                raise LimitExceeded(
                    f"the conversation has reached its limit of {max_turns} turns "
                    "(AITASKS_MAX_TURNS); start a new one",
                    param="conversation_id",
                    limit=max_turns,
                )
        row = {**values, "conversation_id": conversation_id, "turn": turn}
        row["created_at"] = row["updated_at"] = now
        await session.execute(INSERT_TASK, row)
        if files:
            await session.execute(INSERT_FILE, [{**f, "task_id": row["id"]} for f in files])
        await session.execute(
            INSERT_MESSAGE,
            {
                "conversation_id": conversation_id,
                "turn": turn,
                "role": Role.USER,
                "content": prompt,
                "files": [],
                "data": values["input"],
                "task_id": row["id"],
                "created_at": now,
            },
        )
        if idempotency_key is not None:
            await session.execute(
                INSERT_IDEMPOTENCY_KEY,
                {
                    "tenant": tenant,
                    "key": idempotency_key,
                    "request_hash": request_hash,
                    "task_id": row["id"],
                    "created_at": now,
                },
            )
    return Task(**row)


async def _insert_first_turn(
    engine: AsyncEngine,
    values: dict[str, Any],
    now: datetime,
    idempotency_key: str | None,
    request_hash: str,
) -> Task:
    """The most common submit, a new conversation's first turn, written with the others
    submitted meanwhile (`submit_batch`): answered once its rows are committed."""
    conversation_id = new_id()
    key = None
    if idempotency_key is not None:
        key = {"tenant": values["tenant"], "key": idempotency_key, "request_hash": request_hash,
               "task_id": values["id"], "created_at": now}  # fmt: skip
    turn = FirstTurn({**values, "conversation_id": conversation_id}, now, key)
    await write_first_turn(engine, turn)
    return detached_task(turn.task())


# Every poll runs this: a Core statement built once, not an ORM session's identity-map load.
READ_TASK = select(table_of(Task)).where(
    table_of(Task).c.id == bindparam("task_id"), owned_by(Task, bindparam("tenant"))
)


# The same on PostgreSQL, for the driver itself: SQLAlchemy's work per statement (the compiled
# cache's lookup, binding, the result's rows) cost several times the driver's. By id alone, the
# tenant compared on the row: a prepared statement's generic plan, made while `tasks` was nearly
# empty, read `id AND tenant` through the tenant's index, a scan that grew with the tenant's tasks
# (18 buffers a poll at 1,500 tasks, 4 through the primary key).
READ_TASK_SQL = f"SELECT {', '.join(table_of(Task).c.keys())} FROM tasks WHERE id = $1"


# An instance made by `new_instance` reads its attributes only once the mappers are configured,
# which the ORM otherwise does at its first query or constructor call: done here (every model is
# defined by now), so that a fresh process's first submit or poll can read what it made.
configure_mappers()
_new_task = inspect(Task).class_manager.new_instance


def detached_task(columns: Mapping[Any, Any]) -> Task:
    """A `Task` of these column values, for reading only: its attributes filled in directly, not
    one by one through the ORM's instrumentation as `Task(**columns)` does (a twentieth of the
    cost, on every poll and submit). No session tracks it, and none may."""
    task = _new_task()
    task.__dict__.update(columns)
    return task


async def read_task(connection: AsyncConnection, task_id: str, *, tenant: str) -> Task:
    """The tenant's task, for reading only: a detached row, not tracked by any session."""
    raw = await driver.driver_of(connection)
    task = await _read_on_driver(raw.fetchrow, task_id, tenant) if raw is not None else None
    if task is not None:
        return task
    row = (await connection.execute(READ_TASK, {"task_id": task_id, "tenant": tenant})).first()
    if row is None:
        raise TaskNotFound(task_id)
    return detached_task(row._mapping)


async def read_task_from(db: Database, task_id: str, *, tenant: str) -> Task:
    """`read_task` on a connection of the read pool where there is one (PostgreSQL,
    `driver.ReadPool`): it costs the gateway a quarter of one from SQLAlchemy's. Without that
    pool, or after any error on it, the read goes through SQLAlchemy's pool, which tells an outage
    from the rest."""
    pool = await db.read_pool.get() if db.read_pool is not None else None
    task = await _read_on_driver(pool.fetchrow, task_id, tenant) if pool is not None else None
    if task is not None:
        return task
    async with db.read_connection() as connection:
        return await read_task(connection, task_id, tenant=tenant)


async def _read_on_driver(
    fetchrow: Callable[..., Awaitable[Any]], task_id: str, tenant: str
) -> Task | None:
    """`READ_TASK_SQL` by asyncpg (a connection's or a pool's `fetchrow`); None after any error
    of the driver's, for the caller to read again through SQLAlchemy, which tells an outage from
    the rest."""
    try:
        found = await fetchrow(READ_TASK_SQL, task_id)
    except Exception:
        return None
    if found is None or found["tenant"] != tenant:
        raise TaskNotFound(task_id)  # another tenant's is as good as missing
    return detached_task(found)


async def get_task(session: AsyncSession, task_id: str, *, tenant: str) -> Task:
    """The tenant's task; another tenant's is as good as missing (404, not 403)."""
    return await get_owned(session, Task, task_id, tenant=tenant)


async def unfinished_of(session: AsyncSession, task_ids: Sequence[str]) -> list[str]:
    """Which of these tasks have not finished."""
    if not task_ids:
        return []
    rows = await session.scalars(
        select(Task.id).where(Task.id.in_(task_ids), Task.status.in_(UNFINISHED_STATUSES))
    )
    return list(rows)


async def list_tasks(
    session: AsyncSession,
    *,
    tenant: str,
    status: TaskStatus | None = None,
    model: str | None = None,
    conversation_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    after: str | None = None,
    limit: int = 20,
) -> Sequence[Task]:
    """The tenant's tasks newest first; `after` is the id of the last task of the previous
    page."""
    query = select(Task)
    if status is not None:
        query = query.where(Task.status == status)
        if status in ERRORED_STATUSES:
            # Said outright so PostgreSQL can use the partial index of errored tasks.
            query = query.where(Task.error.is_not(None))
    if model is not None:
        query = query.where(Task.model == model)
    if conversation_id is not None:
        query = query.where(Task.conversation_id == conversation_id)
    if created_after is not None:
        query = query.where(Task.created_at >= created_after)
    if created_before is not None:
        query = query.where(Task.created_at < created_before)
    query = await newest_first(
        session, query, Task, Task.created_at, tenant=tenant, after=after, limit=limit
    )
    rows = await session.scalars(query)
    return rows.all()


async def cancel_task(session: AsyncSession, task_id: str, *, tenant: str) -> Task:
    """Cancel a task that has not finished: a `PENDING` one is never run, a `RUNNING` one's
    worker can no longer write its result (and is told to stop)."""
    now = utcnow()
    async with session.begin():
        cancelled = await session.execute(
            one_of(update(Task), Task, task_id, tenant=tenant)
            .where(Task.status.in_(UNFINISHED_STATUSES))
            .values(
                status=TaskStatus.CANCELLED,
                error={"type": "cancelled", "message": "cancelled at the client's request"},
                lease_until=None,
                finished_at=now,
                updated_at=now,
            )
            .returning(Task.callback_url, Task.callback_events)
        )
        row = cancelled.first()
        found = row is not None
        if row is not None:
            add_delivery(session, task_id, row[0], row[1], TaskStatus.CANCELLED)
    task = await get_task(session, task_id, tenant=tenant)
    if not found:
        raise Conflict(f"task {task_id!r} has already finished ({task.status})", param="task_id")
    return task


# What a retry may start again.
RETRYABLE_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})


def not_retryable(task: Task) -> Conflict:
    """The 409 a retry of a task that has not failed or been cancelled answers with."""
    return Conflict(
        f"only FAILED or CANCELLED tasks can be retried; this one is {task.status}",
        param="task_id",
    )


async def retry_task(session: AsyncSession, task_id: str, *, tenant: str) -> Task:
    """Put a `FAILED` or `CANCELLED` task back to `PENDING`, with a fresh set of attempts."""
    now = utcnow()
    async with session.begin():
        requeued = await session.execute(
            one_of(update(Task), Task, task_id, tenant=tenant)
            .where(Task.status.in_(RETRYABLE_STATUSES))
            .values(
                status=TaskStatus.PENDING,
                # SQL NULL: a JSON column given None writes JSON null, which `error IS NOT NULL`
                # (the errored index, `ix_tasks_tenant_errored`) counts as an error.
                error=null(),
                result=null(),
                attempts=0,
                worker_id=None,
                lease_until=None,
                started_at=None,
                finished_at=None,
                updated_at=now,
            )
            .returning(Task.id)
        )
        found = requeued.first() is not None
    task = await get_task(session, task_id, tenant=tenant)
    if not found:
        raise not_retryable(task)
    return task
