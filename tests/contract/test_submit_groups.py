"""Group commit (store/submit_batch.py): concurrent submits written together, each answered as if
it had been written alone; on SQLite, where they are written one by one, the same answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from aitasks.auth.caller import LOCAL_TENANT
from aitasks.config import async_database_url
from aitasks.errors import DatabaseUnavailable, IdempotencyKeyReused, TaskNotFound
from aitasks.routing import ModelTable
from aitasks.store import driver
from aitasks.store import tasks as store
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from aitasks.store.models import (
    Conversation,
    IdempotencyKey,
    Message,
    Task,
    as_utc,
)
from aitasks.store.tasks import Owner, Submission
from tests.support.statements import GROUP_STATEMENT, connection_cut_at

SPEC = ModelTable.load(environ={}).resolve("mock-chat")
OWNER = Owner(LOCAL_TENANT)


async def submit(db: Database, prompt: str, **options: Any) -> Submission:
    async with db.session() as session:
        return await store.submit_task(
            session, owner=OWNER, spec=SPEC, prompt=prompt, conversation_id=None, **options
        )


async def rows(db: Database, model: Any) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def stored_ids(db: Database) -> set[str]:
    async with db.session() as session:
        return set(await session.scalars(select(Task.id)))


async def test_concurrent_submits_are_each_answered_right(db: Database) -> None:
    taken = (await submit(db, "first")).task.id
    plain = [submit(db, f"plain {i}") for i in range(40)]
    # Five repeats of one keyed request: one task, five answers naming it.
    repeats = [submit(db, "keyed", idempotency_key="k1", request_hash="h1") for _ in range(5)]
    # One key sent with two different requests: one of them is refused.
    reused = [
        submit(db, "one", idempotency_key="k2", request_hash="a"),
        submit(db, "two", idempotency_key="k2", request_hash="b"),
    ]
    # A row the database refuses (its id is taken): only this request fails.
    bad = submit(db, "bad", task_id=taken)
    answers = await asyncio.gather(*plain, *repeats, *reused, bad, return_exceptions=True)
    plain_answers, repeat_answers = answers[:40], answers[40:45]
    reused_answers, bad_answer = answers[45:47], answers[47]

    assert all(isinstance(a, Submission) and a.created for a in plain_answers)
    assert all(isinstance(a, Submission) for a in repeat_answers)
    keyed = [a for a in repeat_answers if isinstance(a, Submission)]
    assert len({a.task.id for a in keyed}) == 1
    assert sum(a.created for a in keyed) == 1
    assert sorted(type(a).__name__ for a in reused_answers) == [
        "IdempotencyKeyReused",
        "Submission",
    ]
    assert isinstance(bad_answer, IntegrityError)

    # Everything answered as created is committed, and nothing else is.
    created = {a.task.id for a in answers if isinstance(a, Submission) and a.created} | {taken}
    assert await stored_ids(db) == created
    assert len(created) == 1 + 40 + 1 + 1
    assert await rows(db, Conversation) == len(created)
    assert await rows(db, Message) == len(created)
    assert await rows(db, IdempotencyKey) == 2


async def test_a_repeat_after_the_group_gets_the_same_task(db: Database) -> None:
    first, *_ = await asyncio.gather(
        submit(db, "keyed", idempotency_key="k", request_hash="h"),
        *(submit(db, f"other {i}") for i in range(10)),
    )
    again = await submit(db, "keyed", idempotency_key="k", request_hash="h")
    assert first.created and not again.created and again.task.id == first.task.id
    with pytest.raises(IdempotencyKeyReused):
        await submit(db, "keyed", idempotency_key="k", request_hash="other")
    async with db.session() as session:
        task = await store.get_task(session, first.task.id, tenant=LOCAL_TENANT)
    assert (task.turn, task.prompt, task.status) == (1, "keyed", "PENDING")


async def test_postgresql_writes_concurrent_submits_in_few_statements(db: Database) -> None:
    if db.is_sqlite:
        # SQLite has one writer: its submits go one by one, and the test above covers them.
        assert (await submit(db, "alone")).created
        return
    groups: list[int] = []
    real = driver.prepared

    async def counted(connection: Any, sql: str) -> Any:
        statement = await real(connection, sql)
        if not sql.startswith(GROUP_STATEMENT):
            return statement

        class Counted:
            async def fetch(self, *args: Any) -> Any:
                groups.append(len(args[0]))
                return await statement.fetch(*args)

        return Counted()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(driver, "prepared", counted)
        answers = await asyncio.gather(*(submit(db, f"p {i}") for i in range(50)))
    assert all(a.created for a in answers)
    assert await rows(db, Task) == 50
    # One statement a group, of all its submits; two groups may be writing at once.
    assert sum(groups) == 50 and len(groups) <= 10, groups


async def test_a_task_reads_back_as_it_was_submitted(db: Database) -> None:
    params = {"temperature": 0.5, "stop": ["x"]}
    created = (await submit(db, "read me", params=params, context=[{"role": "user"}])).task
    async with db.read_connection() as connection:
        task = await store.read_task(connection, created.id, tenant=LOCAL_TENANT)
        with pytest.raises(TaskNotFound):
            await store.read_task(connection, created.id, tenant="another")
    assert (task.id, task.prompt, task.params, task.context) == (
        created.id, "read me", params, [{"role": "user"}],
    )  # fmt: skip
    assert task.conversation_id == created.conversation_id and task.turn == 1
    assert as_utc(task.created_at) == as_utc(created.created_at)


async def test_a_group_cut_short_by_an_outage_acknowledges_nothing_it_did_not_commit(
    postgres_url: str,
) -> None:
    db = Database(async_database_url(postgres_url))
    await upgrade(db)
    # The group's connection dies as its statement is sent.
    with connection_cut_at(postgres_url, GROUP_STATEMENT) as cut:
        answers = await asyncio.gather(
            *(submit(db, f"p {i}") for i in range(30)), return_exceptions=True
        )
        after = await submit(db, "after the outage")
    try:
        created = {a.task.id for a in answers if isinstance(a, Submission)}
        failed = [a for a in answers if not isinstance(a, Submission)]
        assert cut and failed, answers
        # Refused as an outage (a 503 to retry), not written again behind the client's back.
        assert all(isinstance(a, DatabaseUnavailable) for a in failed), failed
        assert await stored_ids(db) == created | {after.task.id}
        assert await rows(db, Conversation) == len(created) + 1
    finally:
        await db.dispose()
