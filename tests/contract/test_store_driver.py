"""The worker's claims and finishes on PostgreSQL go to asyncpg itself (`store/driver.py`): they
write exactly the rows the SQLAlchemy path writes (every column, JSON `null` and SQL NULL told
apart), and a driver's error surfaces as the service's own error, as through SQLAlchemy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Table, text
from sqlalchemy.exc import IntegrityError

from aitasks.config import async_database_url
from aitasks.errors import DatabaseUnavailable
from aitasks.routing import ModelTable
from aitasks.store import claims, driver, finishes
from aitasks.store import tasks as store
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from aitasks.store.models import (
    LOCAL_TENANT,
    Message,
    Role,
    StoredFile,
    Task,
    TaskStatus,
    WebhookDelivery,
    table_of,
)
from aitasks.store.tasks import Callback, Owner
from tests.support.statements import DRIVER, SQLALCHEMY, statements

SPEC = ModelTable.load(environ={}).resolve("mock-chat")
OWNER = Owner(LOCAL_TENANT)
HOOK = "https://example.com/hook"


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    # One pooled connection, so a test knows which backend its statements go to.
    database = Database(async_database_url(postgres_url), pool_size=1)
    await upgrade(database)
    yield database
    await database.dispose()


async def submit(
    db: Database, conversation_id: str | None = None, callback_url: str | None = None
) -> Task:
    callback = Callback(callback_url, ["task.running"]) if callback_url else None
    async with db.session() as session:
        submission = await store.submit_task(
            session, owner=OWNER, spec=SPEC, prompt="hi", conversation_id=conversation_id,
            callback=callback,
        )  # fmt: skip
        return submission.task


async def claimed(db: Database, *ids: str) -> list[Task]:
    got = await claims.claim_deliveries(db, ids, worker_id="w1", lease_seconds=30)
    assert [c.outcome for c in got] == [claims.ClaimOutcome.CLAIMED] * len(ids)
    return [c.task for c in got if c.task is not None]


async def finish(db: Database, outcomes: list[finishes.Outcome]) -> list[Any]:
    async with db.session() as session:
        return await finishes.finish_tasks(session, outcomes, worker_id="w1")


async def a_worker_flow(db: Database, *, on_driver: bool) -> list[Any]:
    """Claims, then a flush of three outcomes (a plain reply, a failure, a reply with a file,
    data and a webhook) and a lone finish; what each returned."""
    first, failing, single = [await submit(db) for _ in range(3)]
    later = await submit(db, first.conversation_id)
    hooked = await submit(db, callback_url=HOOK)
    async with statements(db) as seen:
        ok_task, failing_task, single_task = await claimed(db, first.id, failing.id, single.id)
    assert ({s.by for s in seen} == {DRIVER}) is on_driver
    (hooked_task,) = await claimed(db, hooked.id)  # its webhook: `claim_tasks`, SQLAlchemy
    image = finishes.NewFile("file" + "0" * 28, "image/png", 3, "images/x.png")
    outcomes = [
        finishes.success(ok_task, text="fine"),
        finishes.failure(failing_task, error_type="provider_error", message="boom"),
        finishes.success(
            hooked_task, text="", files=[image], usage={"total_tokens": 3},
            served_model="mock-chat-2", provider="mock", data={"reasoning": "why"},
        ),
    ]  # fmt: skip
    async with statements(db) as seen:
        flushed = await finish(db, outcomes)
        alone = await finish(db, [finishes.success(single_task, text="alone")])
    assert ({s.by for s in seen} == {DRIVER}) is on_driver
    # Two statements a flush whatever its size: the write, and the read of the next turns.
    assert len(seen) == 4, seen
    assert flushed[0].next_turn.id == later.id
    return [
        [f is not None and (f.next_turn.id == later.id if f.next_turn else None) for f in flushed],
        alone,
    ]


TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00")
ID = re.compile(r"[0-9a-f]{32}")


async def every_row(db: Database) -> list[tuple[str, list[Any]]]:
    """Every column of every row the flow wrote, as PostgreSQL holds it (NULL or its text), with
    ids and times made comparable across two runs."""
    names: dict[str, str] = {}

    def comparable(value: str | None) -> str | None:
        if value is None:
            return None
        value = TIME.sub("<time>", value)
        return ID.sub(lambda m: names.setdefault(m[0], f"<id{len(names)}>"), value)

    found = []
    orders = {"tasks": "created_at, turn", "messages": "id", "files": "id"}
    orders["webhook_deliveries"] = "created_at, event"
    async with db.read_connection() as connection:
        for model in (Task, Message, StoredFile, WebhookDelivery):
            table: Table = table_of(model)
            columns = ", ".join(f'"{c.name}"::text' for c in table.c)
            query = f"SELECT {columns} FROM {table.name} ORDER BY {orders[table.name]}"
            for row in await connection.execute(text(query)):
                found.append((table.name, [comparable(value) for value in row]))
    return found


async def test_the_driver_writes_what_sqlalchemy_writes(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_driver = await a_worker_flow(pg, on_driver=True)
    driven = await every_row(pg)
    async with pg.read_connection() as connection:
        await connection.execute(text("TRUNCATE conversations, tasks RESTART IDENTITY CASCADE"))

    async def no_driver(_connection: Any) -> None:
        return None

    # Every statement through SQLAlchemy, as after errors of the driver's.
    monkeypatch.setattr(driver, "driver_of", no_driver)
    assert pg.read_pool is not None
    await pg.read_pool.close()
    monkeypatch.setattr(pg, "read_pool", None)
    by_sqlalchemy = await a_worker_flow(pg, on_driver=False)
    assert by_driver == by_sqlalchemy
    assert driven == await every_row(pg)
    # JSON `null` is not SQL NULL: a reply without usage is written as SQLAlchemy writes it.
    first_task = driven[0][1]
    assert first_task[list(table_of(Task).c.keys()).index("usage")] == "null"


async def backend_of(db: Database) -> int:
    async with db.read_connection() as connection:
        pid: int = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        return pid


async def cut(db: Database, url: str) -> None:
    """The one pooled connection's backend ends (PostgreSQL restarted, a fail-over)."""
    pid = await backend_of(db)
    other = Database(url)
    try:
        async with other.read_connection() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await other.dispose()
    await asyncio.sleep(0.2)  # the driver hears of it


async def test_a_cut_connection_is_the_database_unavailable_and_writes_nothing(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = await submit(pg)
    await cut(pg, pg.url)

    async def pool_fails(*_args: Any) -> None:
        raise OSError("connection reset")  # the pool's connection cut as well

    with monkeypatch.context() as patched:
        patched.setattr(driver, "fetch_pooled", pool_fails)
        with pytest.raises(DatabaseUnavailable):
            await claims.claim_deliveries(pg, [task.id], worker_id="w1", lease_seconds=30)
    (held,) = await claimed(pg, task.id)  # the pool connects anew; nothing was taken before
    assert held.attempts == 1

    await cut(pg, pg.url)
    with pytest.raises(DatabaseUnavailable):
        await finish(pg, [finishes.success(held, text="lost")])
    async with pg.session() as session:
        assert (await session.get(Task, task.id)).status == TaskStatus.RUNNING  # type: ignore[union-attr]
    assert await finish(pg, [finishes.success(held, text="kept")]) == [finishes.Finished()]


async def test_a_claim_outlives_its_pool_connection_cut(pg: Database) -> None:
    """The claim's connection from asyncpg's pool ends (a restart, a fail-over): the pool
    connects anew, or the claim goes through SQLAlchemy; either way it is taken once."""
    first, second = await submit(pg), await submit(pg)
    await claimed(pg, first.id)  # the pool made, its connection open
    async with pg.read_connection() as connection:
        await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    await asyncio.sleep(0.2)
    (task,) = await claimed(pg, second.id)
    assert task.attempts == 1


async def test_a_database_out_before_the_pool_was_made_is_unavailable(postgres_url: str) -> None:
    url = async_database_url(postgres_url)
    gone = Database(url.rsplit("@", 1)[0] + "@127.0.0.1:9/nowhere", pool_size=1)
    try:
        with pytest.raises(DatabaseUnavailable):
            await claims.claim_deliveries(gone, ["x" * 32], worker_id="w1", lease_seconds=30)
    finally:
        await gone.dispose()


async def test_a_refused_write_rolls_the_whole_flush_back_as_sqlalchemy_reports_it(
    pg: Database,
) -> None:
    """A doubled reply (the turn's assistant message exists) is SQLAlchemy's IntegrityError, not
    asyncpg's own error, and the flush's other task is not written either."""
    ok, doubled = await submit(pg), await submit(pg)
    ok_task, doubled_task = await claimed(pg, ok.id, doubled.id)
    async with pg.session() as session, session.begin():
        session.add(
            Message(
                conversation_id=doubled.conversation_id, turn=doubled.turn,
                role=Role.ASSISTANT, content="already", files=[],
            )
        )  # fmt: skip
    outcomes = [
        finishes.success(ok_task, text="fine"),
        finishes.success(doubled_task, text="again"),
    ]
    with pytest.raises(IntegrityError):
        await finish(pg, outcomes)
    async with pg.session() as session:
        for task_id in (ok.id, doubled.id):
            stored = await session.get(Task, task_id)
            assert stored is not None and stored.status == TaskStatus.RUNNING


async def test_a_driver_error_mid_flush_goes_on_through_sqlalchemy(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush's write fails on the driver (its statement took nothing): it and the read of
    the next turns after it go through SQLAlchemy's connection, with the same SQL and outcome."""
    first = await submit(pg)
    later = await submit(pg, first.conversation_id)
    other = await submit(pg)
    held = await claimed(pg, first.id, other.id)
    prepare = driver.prepared

    async def flush_fails(connection: Any, sql: str) -> Any:
        if sql.startswith("WITH o AS"):  # the flush's write
            raise OSError("connection reset")
        return await prepare(connection, sql)

    monkeypatch.setattr(driver, "prepared", flush_fails)
    async with statements(pg) as seen:
        written = await finish(pg, [finishes.success(task, text="ok") for task in held])
    # The write tried on the driver, then it and the read through SQLAlchemy.
    assert [s.by for s in seen] == [DRIVER, SQLALCHEMY, SQLALCHEMY]
    assert written[0].next_turn.id == later.id and written[1] == finishes.Finished()
    async with pg.session() as session:
        for task in held:
            stored = await session.get(Task, task.id)
            assert stored is not None and stored.status == TaskStatus.SUCCESS


async def test_a_prepared_statement_is_planned_again_as_it_ages(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL keeps a prepared statement's plan as the tables were when it was made: the
    driver prepares each statement again once it is REPLAN_FIRST_SECONDS old, then twice that,
    up to REPLAN_LAST_SECONDS, so a plan made on an empty table does not outlive it."""
    clock = [1000.0]
    monkeypatch.setattr(driver.time, "monotonic", lambda: clock[0])
    async with pg.engine.connect() as connection:
        raw = await driver.driver_of(connection)
        first = await driver.prepared(raw, "SELECT 1")
        assert await driver.prepared(raw, "SELECT 1") is first
        ages = []
        for _ in range(8):
            statement = await driver.prepared(raw, "SELECT 1")
            age = 0.0
            while await driver.prepared(raw, "SELECT 1") is statement:
                clock[0] += 0.5
                age += 0.5
            ages.append(age)
    first_age, last_age = driver.REPLAN_FIRST_SECONDS, driver.REPLAN_LAST_SECONDS
    assert ages == [min(first_age * 2**n, last_age) for n in range(8)]
    assert ages[-1] == last_age
