"""Group commit: a new conversation's first turn, submitted concurrently by many requests, written
by one transaction of multi-row INSERTs on PostgreSQL, each request answered once its row is
committed.

A submit that finds no group writing joins a new one, which starts writing at the next turn of the
event loop (so the submits that arrived in the same tick go with it); those that arrive while a
group writes wait for the next, which grows with the load. One round trip per statement per group,
not per task: the driver's and SQLAlchemy's cost per statement is most of a submit's. A group
whose transaction fails is written again one by one, each submit in its own transaction, so one
bad row (a value the database refuses, an idempotency key already taken) fails only its own
request; one cut short by an outage fails every request of it, as each would have failed alone.
Only PostgreSQL groups: SQLite has one writer anyway, and its submits go one by one.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Insert, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aitasks.errors import DatabaseUnavailable
from aitasks.grouping import Groups, groups_of
from aitasks.store.database import translated
from aitasks.store.models import Conversation, IdempotencyKey, Message, Role, Task, table_of

TITLE_CHARS = 80
# Rows one transaction writes at most; a larger backlog is written by the groups after it.
GROUP_ROWS = 100
# Groups written at once: one writing while the next fills keeps every round trip busy.
GROUPS_IN_FLIGHT = 2

INSERT_CONVERSATION = insert(table_of(Conversation))
INSERT_TASK = insert(table_of(Task))
INSERT_MESSAGE = insert(table_of(Message))
INSERT_IDEMPOTENCY_KEY = insert(table_of(IdempotencyKey))


def _first_turn_statement(task_fields: tuple[str, ...]) -> Insert:
    """A new conversation, its first task and the user's message as one PostgreSQL statement
    (data-modifying CTEs): atomic by itself, so it needs no BEGIN and COMMIT around it, and the
    foreign keys between the three rows are checked at its end. One round trip, not five: what a
    lone submit (a group of one) runs."""
    conversations, tasks, messages = table_of(Conversation), table_of(Task), table_of(Message)

    def bind(column: Any, key: str | None = None) -> Any:
        # Prefixed: a bind parameter may not be named like a column of its INSERT.
        return bindparam(f"p_{key or column.name}", type_=column.type)

    now = bind(tasks.c.created_at, "now")
    conversation = (
        insert(conversations)
        .values(
            id=bind(conversations.c.id, "conversation_id"),
            tenant=bind(conversations.c.tenant),
            title=bind(conversations.c.title),
            turns=1,
            created_at=now,
            updated_at=now,
        )
        .cte("new_conversation")
    )
    task = (
        insert(tasks)
        .values(
            {name: bind(tasks.c[name]) for name in task_fields}
            | {
                "conversation_id": bind(tasks.c.conversation_id),
                "turn": 1,
                "created_at": now,
                "updated_at": now,
            }
        )
        .cte("new_task")
    )
    return (
        insert(messages)
        .values(
            conversation_id=bind(messages.c.conversation_id),
            turn=1,
            role=Role.USER.value,
            content=bind(messages.c.content, "prompt"),
            files=[],
            data=bind(messages.c.data, "input"),
            task_id=bind(messages.c.task_id, "id"),
            created_at=now,
        )
        .add_cte(conversation, task)
    )


# Compiled once per set of task columns (a surface may set more columns than another).
_FIRST_TURN: dict[tuple[str, ...], Insert] = {}


@dataclass(slots=True)
class FirstTurn:
    """One submit's rows: its task's columns (`values`, conversation and turn included), and its
    idempotency key's row when it has one."""

    values: dict[str, Any]
    now: datetime
    key: dict[str, Any] | None

    def conversation(self) -> dict[str, Any]:
        v = self.values
        return {"id": v["conversation_id"], "tenant": v["tenant"],
                "title": v["prompt"][:TITLE_CHARS], "turns": 1,
                "created_at": self.now, "updated_at": self.now}  # fmt: skip

    def task(self) -> dict[str, Any]:
        return {**self.values, "turn": 1, "created_at": self.now, "updated_at": self.now}

    def message(self) -> dict[str, Any]:
        v = self.values
        return {"conversation_id": v["conversation_id"], "turn": 1, "role": Role.USER,
                "content": v["prompt"], "files": [], "data": v["input"], "task_id": v["id"],
                "created_at": self.now}  # fmt: skip


async def _write(connection: AsyncConnection, turns: list[FirstTurn]) -> None:
    """The rows of `turns` in one transaction: a multi-row INSERT per table, parents first."""
    async with connection.begin():
        await connection.execute(INSERT_CONVERSATION, [t.conversation() for t in turns])
        # One statement per set of columns: a surface may set columns another leaves out.
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for t in turns:
            row = t.task()
            by_columns.setdefault(tuple(row), []).append(row)
        for rows in by_columns.values():
            await connection.execute(INSERT_TASK, rows)
        await connection.execute(INSERT_MESSAGE, [t.message() for t in turns])
        keys = [t.key for t in turns if t.key is not None]
        if keys:
            await connection.execute(INSERT_IDEMPOTENCY_KEY, keys)


async def _write_one(connection: AsyncConnection, turn: FirstTurn) -> None:
    """One submit alone; without a key, as one statement that is its own transaction."""
    if turn.key is not None:
        await _write(connection, [turn])
        return
    fields = tuple(name for name in turn.values if name != "conversation_id")
    statement = _FIRST_TURN.get(fields)
    if statement is None:
        statement = _FIRST_TURN[fields] = _first_turn_statement(fields)
    params = {**turn.values, "title": turn.values["prompt"][:TITLE_CHARS], "now": turn.now}
    alone = await connection.execution_options(isolation_level="AUTOCOMMIT")
    await alone.execute(statement, {f"p_{name}": value for name, value in params.items()})


async def _commit(engine: AsyncEngine, turns: list[FirstTurn]) -> list[BaseException | None]:
    """Write `turns` in one transaction; what stopped each one, or None."""
    try:
        async with engine.connect() as connection:
            if len(turns) == 1:
                await _write_one(connection, turns[0])
            else:
                await _write(connection, turns)
    except Exception as exc:
        if len(turns) == 1 or isinstance(translated(exc), DatabaseUnavailable):
            # An outage fails the group as it would each alone: written again, a group whose
            # COMMIT was lost on the way back would find its own rows and fail otherwise.
            return [exc] * len(turns)
        # Some row failed the group: each on its own, so only that one's request fails.
        alone = await asyncio.gather(*(_commit(engine, [one]) for one in turns))
        return [errors[0] for errors in alone]
    return [None] * len(turns)


_groups: weakref.WeakKeyDictionary[AsyncEngine, Groups[FirstTurn]] = weakref.WeakKeyDictionary()


async def write_first_turn(engine: AsyncEngine, turn: FirstTurn) -> None:
    """Write `turn` with the other first turns submitted meanwhile; return once it is committed."""
    groups = groups_of(
        _groups,
        engine,
        lambda: Groups(partial(_commit, engine), most=GROUP_ROWS, in_flight=GROUPS_IN_FLIGHT),
    )
    await groups.hand_in(turn)
