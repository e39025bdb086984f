"""Group commit: a new conversation's first turn, submitted concurrently by many requests, written
by one PostgreSQL statement for the whole group, each request answered once its rows are
committed.

A submit that finds no group writing joins a new one, which starts writing at the next turn of the
event loop (so the submits that arrived in the same tick go with it); those that arrive while a
group writes wait for the next, which grows with the load. The statement (`first_turns_sql`)
inserts the conversations, tasks, user messages and idempotency keys of every submit of the group
from arrays, one per column, through data-modifying CTEs: atomic by itself, so it is sent by
asyncpg itself outside any transaction (no BEGIN or COMMIT round trips), and the foreign keys
between its rows are checked at its end. A group the statement fails on is written again one by
one, each submit alone, so one bad row (a value the database refuses, an idempotency key already
taken) fails only its own request; one cut short by an outage fails every request of it, as each
would have failed alone. Only PostgreSQL groups: SQLite has one writer anyway, and its submits go
one by one.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from aitasks.errors import DatabaseUnavailable
from aitasks.grouping import Groups, groups_of
from aitasks.store import driver
from aitasks.store.array_rows import array_of, element_type, quote, sent, value_of
from aitasks.store.database import translated
from aitasks.store.models import Conversation, IdempotencyKey, Message, Role, Task, table_of
from aitasks.store.on_driver import OnPostgres

TITLE_CHARS = 80
# Rows one statement writes at most; a larger backlog is written by the groups after it.
GROUP_ROWS = 100
# Groups written at once: one writing while the next fills keeps every round trip busy.
GROUPS_IN_FLIGHT = 2

CONVERSATIONS = table_of(Conversation)
TASKS = table_of(Task)
MESSAGES = table_of(Message)
IDEMPOTENCY_KEYS = table_of(IdempotencyKey)


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


# ---- One statement a group: each table's rows as one array per column


def _written_columns(table: Table, rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The columns an INSERT of `rows` writes, in the table's order: those any row sets, and
    those SQLAlchemy fills from the model's default when a row leaves them out (`_column`)."""
    given = {name for row in rows for name in row}
    return tuple(c.name for c in table.c if c.name in given or c.default is not None)


def _insert(table: Table, columns: Sequence[str], first: int, alias: str) -> str:
    """INSERT of `table`'s rows from one array per column (see `array_rows`), its parameters
    numbered from `first`."""
    arrays = ", ".join(
        array_of(f"${first + i}::{element_type(table, c)}[]") for i, c in enumerate(columns)
    )
    names = ", ".join(quote(c) for c in columns)
    values = ", ".join(value_of(table, alias, c) for c in columns)
    return (
        f"INSERT INTO {table.name} ({names}) "
        f"SELECT {values} FROM unnest({arrays}) AS {alias}({names})"
    )


# Where a group's rows go, by table name (`first_turns_sql`'s key).
TABLES = {t.name: t for t in (CONVERSATIONS, TASKS, IDEMPOTENCY_KEYS, MESSAGES)}
# A table and the columns its INSERT writes.
Written = tuple[tuple[str, tuple[str, ...]], ...]


@functools.cache
def first_turns_sql(written: Written) -> str:
    """The statement writing a group's rows: an INSERT per table of `written`, the last the
    statement's own and the others its CTEs, their parameters one array per column in that
    order. One text per set of columns: a surface may set task columns another leaves out, and a
    group without idempotency keys leaves their INSERT out."""
    inserts, first = [], 1
    for i, (name, columns) in enumerate(written):
        inserts.append(_insert(TABLES[name], columns, first, f"r{i}"))
        first += len(columns)
    *ctes, last = inserts
    return "WITH " + ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(ctes)) + " " + last


def _column(table: Table, name: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """One column of `rows` as SQLAlchemy's INSERT writes it: a row that leaves it out gets the
    model's default (as a multi-row INSERT of the rows without it would), else SQL NULL; as its
    array carries it (`array_rows.sent`)."""
    default = table.c[name].default
    values: list[Any] = []
    for row in rows:
        if name in row:
            value = row[name]
        elif default is None:
            values.append(None)
            continue
        elif default.is_scalar:
            value = default.arg  # type: ignore[attr-defined]
        elif default.is_callable:
            value = default.arg(None)  # type: ignore[attr-defined]  # wrapped: takes a context
        else:
            raise ValueError(f"{table.name}.{name}: a default only SQL can make")
        values.append(sent(table, name, value))
    return values


def first_turns_args(turns: Sequence[FirstTurn]) -> tuple[str, list[list[Any]]]:
    """The group statement for `turns` and its parameters."""
    keys = [t.key for t in turns if t.key is not None]
    rows = (
        (CONVERSATIONS, [t.conversation() for t in turns]),
        (TASKS, [t.task() for t in turns]),
        *(((IDEMPOTENCY_KEYS, keys),) if keys else ()),
        (MESSAGES, [t.message() for t in turns]),
    )
    written = tuple((table.name, _written_columns(table, of)) for table, of in rows)
    args = [
        _column(table, column, of)
        for (table, of), (_name, columns) in zip(rows, written, strict=True)
        for column in columns
    ]
    return first_turns_sql(written), args


async def _write(engine: AsyncEngine, turns: Sequence[FirstTurn]) -> None:
    """The rows of `turns` in one statement, sent by asyncpg itself (`OnPostgres`: through
    SQLAlchemy after an error of the driver's, which begins and commits only then)."""
    sql, args = first_turns_args(turns)
    async with engine.connect() as connection, connection.begin():
        await OnPostgres(connection, await driver.driver_of(connection)).fetch(sql, args)


async def _commit(engine: AsyncEngine, turns: list[FirstTurn]) -> list[BaseException | None]:
    """Write `turns` in one statement; what stopped each one, or None."""
    try:
        await _write(engine, turns)
    except Exception as exc:
        if len(turns) == 1 or isinstance(translated(exc), DatabaseUnavailable):
            # An outage fails the group as it would each alone: written again, a group whose
            # commit was lost on the way back would find its own rows and fail otherwise.
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
