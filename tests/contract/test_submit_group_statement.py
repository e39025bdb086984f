"""The group commit's statement on PostgreSQL (store/submit_batch.py): a group of first turns is
one statement on asyncpg itself, outside any transaction, writing exactly the rows SQLAlchemy's
multi-row INSERTs of the same turns wrote; a row it refuses fails only its own submit, an outage
fails every submit of the group."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from aitasks.auth.caller import LOCAL_TENANT
from aitasks.config import async_database_url
from aitasks.errors import DatabaseUnavailable
from aitasks.routing import ModelTable
from aitasks.store import driver
from aitasks.store import submit_batch as batch
from aitasks.store.database import Database, translated
from aitasks.store.migrate import upgrade
from aitasks.store.models import Conversation, IdempotencyKey, Message, Task, table_of, utcnow
from aitasks.store.submit_batch import FirstTurn
from aitasks.store.tasks import Callback, Owner, task_values
from tests.support.services import fresh_postgres_database
from tests.support.statements import GROUP_STATEMENT, connection_cut_at

SPEC = ModelTable.load(environ={}).resolve("mock-chat")
OWNER = Owner(LOCAL_TENANT, api_key_id="key1")
TABLES = ("conversations", "tasks", "messages", "idempotency_keys")


async def database(url: str) -> Database:
    db = Database(async_database_url(url))
    await upgrade(db)
    return db


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    db = await database(postgres_url)
    yield db
    await db.dispose()


def first_turns(*, keyed: bool) -> list[FirstTurn]:
    """Turns as every surface makes them, and one that leaves columns out (their defaults, or
    NULL, must be what SQLAlchemy's INSERT wrote)."""
    now = utcnow()
    full = task_values(
        OWNER, SPEC, "ü" * 100, params={"temperature": 0.5, "stop": None},
        context=[{"role": "user", "content": "before"}],
        callback=Callback("http://hooks.test/x", ["task.running"]),
        trace_context="00-" + "a" * 32 + "-" + "b" * 16 + "-01", turn_input={"parts": [1, None]},
        scheduling={"priority": "high", "weight": 3, "expires_at": now + timedelta(minutes=5),
                    "timeout_seconds": 30.5},
        response={"instructions": None},
    )  # fmt: skip
    plain = task_values(OWNER, SPEC, "plain")
    left_out = {
        k: v
        for k, v in task_values(OWNER, SPEC, "left out", params={"x": 1}).items()
        if k not in ("priority", "weight", "response", "callback_events", "api_key_id")
    }
    made = []
    for i, values in enumerate([full, plain, left_out, task_values(OWNER, SPEC, "")]):
        key = None
        if keyed and i % 2 == 0:
            key = {"tenant": LOCAL_TENANT, "key": f"k{i}", "request_hash": f"h{i}",
                   "task_id": values["id"], "created_at": now}  # fmt: skip
        made.append(FirstTurn({**values, "conversation_id": f"c{i}"}, now, key))
    return made


async def write_as_sqlalchemy_did(engine: AsyncEngine, turns: list[FirstTurn]) -> None:
    """The group commit before this statement: one transaction of multi-row INSERTs."""
    async with engine.begin() as connection:
        await connection.execute(insert(table_of(Conversation)), [t.conversation() for t in turns])
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for t in turns:
            row = t.task()
            by_columns.setdefault(tuple(row), []).append(row)
        for rows in by_columns.values():
            await connection.execute(insert(table_of(Task)), rows)
        await connection.execute(insert(table_of(Message)), [t.message() for t in turns])
        keys = [t.key for t in turns if t.key is not None]
        if keys:
            await connection.execute(insert(table_of(IdempotencyKey)), keys)


async def every_column(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows, every column as its text (JSON null apart from SQL NULL)."""
    found = {}
    async with db.engine.connect() as connection:
        for table in TABLES:
            names = [c.name for c in table_of_name(table).c]
            columns = ", ".join(f'"{name}"::text' for name in names)
            result = await connection.execute(text(f"SELECT {columns} FROM {table} ORDER BY 1, 2"))
            found[table] = [tuple(row) for row in result]
    return found


def table_of_name(name: str) -> Any:
    return batch.TABLES[name]


@contextmanager
def driver_statements() -> Iterator[list[tuple[str, int, bool]]]:
    """Each statement sent to asyncpg itself: its SQL, its first array's length, and whether its
    connection was in a transaction then."""
    sent: list[tuple[str, int, bool]] = []
    real = driver.prepared

    async def prepared(connection: Any, sql: str) -> Any:
        statement = await real(connection, sql)

        class Counted:
            async def fetch(self, *args: Any) -> Any:
                sent.append((sql, len(args[0]), connection.is_in_transaction()))
                return await statement.fetch(*args)

        return Counted()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(driver, "prepared", prepared)
        yield sent


@contextmanager
def sqlalchemy_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


@pytest.mark.parametrize("keyed", [False, True])
async def test_a_group_writes_the_rows_sqlalchemy_wrote(postgres_url: str, keyed: bool) -> None:
    turns = first_turns(keyed=keyed)
    with fresh_postgres_database() as other_url:
        new, old = await database(postgres_url), await database(other_url)
        try:
            with driver_statements() as sent, sqlalchemy_statements(new.engine) as through:
                assert await batch._commit(new.engine, turns) == [None] * len(turns)
            await write_as_sqlalchemy_did(old.engine, turns)
            written, expected = await every_column(new), await every_column(old)
        finally:
            await new.dispose()
            await old.dispose()
    assert [(n, on_its_own) for _sql, n, on_its_own in sent] == [(len(turns), False)]
    assert through == []
    assert written == expected
    assert len(written["tasks"]) == len(turns)
    assert len(written["idempotency_keys"]) == (2 if keyed else 0)


async def test_through_sqlalchemy_the_same_statement_writes_the_same_rows(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after an error of the driver's: the same SQL through SQLAlchemy, in a transaction."""
    turns = first_turns(keyed=True)
    with driver_statements() as sent:
        assert await batch._commit(pg.engine, turns) == [None] * len(turns)
    by_driver = await every_column(pg)
    async with pg.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))

    async def no_driver(_connection: Any) -> None:
        return None

    monkeypatch.setattr(driver, "driver_of", no_driver)
    with sqlalchemy_statements(pg.engine) as through:
        assert await batch._commit(pg.engine, turns) == [None] * len(turns)
    assert len(sent) == 1
    assert [s.split()[0] for s in through] == ["WITH"]
    assert await every_column(pg) == by_driver


async def test_a_lone_submit_is_one_statement_of_its_own(pg: Database) -> None:
    for keyed in (False, True):
        turn = first_turns(keyed=True)[0 if keyed else 1]
        with driver_statements() as sent, sqlalchemy_statements(pg.engine) as through:
            assert await batch._commit(pg.engine, [turn]) == [None]
        assert [(n, on_its_own) for _sql, n, on_its_own in sent] == [(1, False)]
        assert through == []


async def test_a_taken_key_fails_only_its_own_submit(pg: Database) -> None:
    a, b, c, d = first_turns(keyed=True)
    assert a.key is not None and c.key is not None
    # d takes a's key within the group, c one already taken before it.
    assert await batch._commit(pg.engine, [c]) == [None]
    c2 = FirstTurn({**c.values, "id": "other-c", "conversation_id": "c-again"}, c.now,
                   {**c.key, "task_id": "other-c"})  # fmt: skip
    d.key = {**a.key, "task_id": d.values["id"]}
    outcomes = await batch._commit(pg.engine, [a, b, c2, d])
    # Written again one by one: b; not c2; a or d, whichever came first.
    assert outcomes[1] is None and isinstance(outcomes[2], IntegrityError)
    assert sorted(o is None for o in (outcomes[0], outcomes[3])) == [False, True], outcomes
    assert all(isinstance(o, IntegrityError) for o in outcomes if o is not None), outcomes
    rows = await every_column(pg)
    assert len(rows["tasks"]) == len(rows["conversations"]) == len(rows["messages"]) == 3


async def test_a_refused_value_fails_only_its_own_submit(pg: Database) -> None:
    turns = first_turns(keyed=False)
    # Longer than tasks.trace_context's 128 characters: refused, not cut short.
    turns[1].values["trace_context"] = "x" * 129
    outcomes = await batch._commit(pg.engine, turns)
    assert [o is None for o in outcomes] == [True, False, True, True]
    assert len((await every_column(pg))["tasks"]) == 3


async def test_an_outage_fails_every_submit_of_the_group(postgres_url: str) -> None:
    db = await database(postgres_url)
    try:
        turns = first_turns(keyed=True)
        with connection_cut_at(postgres_url, GROUP_STATEMENT) as cut:
            outcomes = await batch._commit(db.engine, turns)
        assert cut
        assert all(
            o is not None and isinstance(translated(o), DatabaseUnavailable) for o in outcomes
        ), outcomes
        assert all(rows == [] for rows in (await every_column(db)).values())
        # The next group goes on a fresh connection.
        assert await batch._commit(db.engine, turns) == [None] * len(turns)
    finally:
        await db.dispose()
