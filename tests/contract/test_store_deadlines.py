"""Deadlines in the store, on SQLite and on PostgreSQL: a first claim past the deadline expires the
task in its own transaction; the sweep expires what waits past it, once; a started task's
deadline no longer applies."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from aitasks.priority import Lane, Placement
from aitasks.store import claims, deadlines
from aitasks.store import tasks as store
from aitasks.store.database import Database
from aitasks.store.models import Task, TaskStatus, utcnow
from tests.support.store_rows import OWNER, SPEC, claim


async def submit(db: Database, *, expires_in: float, conversation_id: str | None = None) -> Task:
    async with db.session() as session:
        submission = await store.submit_task(
            session, owner=OWNER, spec=SPEC, prompt="hi", conversation_id=conversation_id,
            scheduling={"priority": Lane.BATCH, "weight": 2,
                        "expires_at": utcnow() + timedelta(seconds=expires_in)},
        )  # fmt: skip
        return submission.task


async def stored(db: Database, task_id: str) -> Task:
    async with db.session() as session:
        task = await session.get(Task, task_id, populate_existing=True)
        assert task is not None
        return task


async def test_a_first_claim_past_the_deadline_expires_the_task(db: Database) -> None:
    late = await submit(db, expires_in=-1)
    after = await submit(db, expires_in=60, conversation_id=late.conversation_id)
    got = await claim(db, late.id)
    assert got.outcome is claims.ClaimOutcome.EXPIRED
    assert got.next_turn is not None and got.next_turn.id == after.id
    assert got.next_turn.placement == Placement(Lane.BATCH, OWNER.tenant, 2)
    row = await stored(db, late.id)
    assert (row.status, row.attempts, row.started_at, row.lease_until) == (
        TaskStatus.EXPIRED, 0, None, None
    )  # fmt: skip
    # Its next turn is free to run; a second delivery of the expired one is dropped.
    assert (await claim(db, after.id)).outcome is claims.ClaimOutcome.CLAIMED
    assert (await claim(db, late.id)).outcome is claims.ClaimOutcome.FINISHED


async def test_the_sweep_expires_what_waits_past_its_deadline_once(db: Database) -> None:
    late = [await submit(db, expires_in=-1) for _ in range(3)]
    on_time = await submit(db, expires_in=60)
    running = await submit(db, expires_in=1)
    assert (await claim(db, running.id)).outcome is claims.ClaimOutcome.CLAIMED
    async with db.session() as session, session.begin():
        # Started before its deadline passed: the deadline no longer applies.
        await session.execute(update(Task).where(Task.id == running.id).values(expires_at=utcnow()))
    async with db.session() as session:
        expired = await deadlines.expire_due(session, utcnow())
    assert {t.id for t in expired} == {t.id for t in late}
    assert all(t.status == TaskStatus.EXPIRED for t in expired)
    async with db.session() as session:
        assert await deadlines.expire_due(session, utcnow()) == []
    assert (await stored(db, on_time.id)).status == TaskStatus.PENDING
    assert (await stored(db, running.id)).status == TaskStatus.RUNNING
