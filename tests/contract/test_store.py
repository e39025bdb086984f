"""Submit, claim, lease and complete, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, update

from aitasks.errors import ConversationNotFound, InvalidRequest, TaskNotFound
from aitasks.store import claims, finishes, webhooks
from aitasks.store import conversations as history
from aitasks.store import tasks as store
from aitasks.store.database import Database
from aitasks.store.models import LOCAL_TENANT, Message, Task, TaskStatus, as_utc
from aitasks.store.tasks import Owner
from tests.support.store_rows import SPEC, claim, complete, submit


async def count(db: Database, model: type[Task] | type[Message]) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_submit_numbers_the_turns_of_a_conversation(db: Database) -> None:
    first = await submit(db)
    second = await submit(db, first.conversation_id)
    assert (first.turn, second.turn) == (1, 2)
    assert first.status == TaskStatus.PENDING
    async with db.session() as session:
        messages = await history.conversation_messages(
            session, first.conversation_id, tenant=LOCAL_TENANT
        )
    assert [(m.turn, m.role) for m in messages] == [(1, "user"), (2, "user")]


async def test_submit_to_a_missing_conversation_writes_nothing(db: Database) -> None:
    with pytest.raises(ConversationNotFound):
        await submit(db, "does-not-exist")
    assert await count(db, Task) == 0
    assert await count(db, Message) == 0


async def test_one_claim_wins_and_a_duplicate_delivery_is_told_so(db: Database) -> None:
    task = await submit(db)
    won = await claim(db, task.id, "w1")
    assert won.outcome is claims.ClaimOutcome.CLAIMED
    assert won.task is not None and won.task.attempts == 1 and won.task.status == "RUNNING"
    assert (await claim(db, task.id, "w2")).outcome is claims.ClaimOutcome.BUSY
    assert await complete(db, won.task, "w1")
    assert (await claim(db, task.id, "w2")).outcome is claims.ClaimOutcome.FINISHED


async def test_concurrent_claims_have_exactly_one_winner(db: Database) -> None:
    task = await submit(db)
    results = await asyncio.gather(*(claim(db, task.id, f"w{i}") for i in range(8)))
    winners = [c for c in results if c.outcome is claims.ClaimOutcome.CLAIMED]
    assert len(winners) == 1


async def test_a_later_turn_waits_for_the_earlier_one(db: Database) -> None:
    first = await submit(db)
    second = await submit(db, first.conversation_id)
    assert (await claim(db, second.id)).outcome is claims.ClaimOutcome.WAITING
    won = await claim(db, first.id)
    assert won.task is not None
    assert (await claim(db, second.id)).outcome is claims.ClaimOutcome.WAITING
    finished = await complete(db, won.task)
    assert finished is not None and finished.next_turn is not None
    assert finished.next_turn[:2] == (second.id, second.queue)
    async with db.session() as session:
        waiting = await claims.next_waiting_turn(session, won.task)
        assert waiting is not None and waiting[:2] == (second.id, second.queue)
    assert (await claim(db, second.id)).outcome is claims.ClaimOutcome.CLAIMED


# PostgreSQL only: SQLite has one writer at a time, so the submit would wait for the finish.
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
async def test_a_turn_submitted_while_the_earlier_one_finishes_is_not_left_waiting(
    db: Database,
) -> None:
    """The finishing transaction looked for a next turn before this one was submitted, so it
    will not publish it: the new turn's claim must wait for that transaction, not give up."""
    first = await submit(db)
    assert (await claim(db, first.id)).task is not None
    async with db.engine.begin() as finishing:  # what `complete_task` does, held open
        await finishing.execute(
            update(Task).where(Task.id == first.id).values(status=TaskStatus.SUCCESS)
        )
        looked = {"conversation_id": first.conversation_id, "turn": first.turn}
        assert (await finishing.execute(finishes.NEXT_TURN, looked)).first() is None
        second = await submit(db, first.conversation_id)
        claiming = asyncio.ensure_future(claim(db, second.id))
        await asyncio.sleep(0.3)
        assert not claiming.done()  # waiting on the finishing transaction's row lock
    assert (await claiming).outcome is claims.ClaimOutcome.CLAIMED


async def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_write(
    db: Database,
) -> None:
    task = await submit(db)
    dead = await claim(db, task.id, "dead-worker", lease=0.05)
    assert dead.task is not None
    await asyncio.sleep(0.1)
    retry = await claim(db, task.id, "live-worker")
    assert retry.outcome is claims.ClaimOutcome.CLAIMED
    assert retry.task is not None and retry.task.attempts == 2
    assert not await complete(db, dead.task, "dead-worker", text="stale")
    assert await complete(db, retry.task, "live-worker", text="fresh")
    async with db.session() as session:
        messages = await history.conversation_messages(
            session, task.conversation_id, tenant=LOCAL_TENANT
        )
    assert [(m.role, m.content) for m in messages] == [("user", "hi"), ("assistant", "fresh")]


async def test_renewing_keeps_the_lease(db: Database) -> None:
    task = await submit(db)
    held = await claim(db, task.id, "w1", lease=0.2)
    assert held.task is not None
    async with db.session() as session:
        assert await claims.renew_lease(session, held.task, worker_id="w1", lease_seconds=30)
        assert not await claims.renew_lease(session, held.task, worker_id="w2", lease_seconds=30)
    await asyncio.sleep(0.3)
    assert (await claim(db, task.id, "w2")).outcome is claims.ClaimOutcome.BUSY


async def test_failing_keeps_the_reason_and_the_attempts(db: Database) -> None:
    task = await submit(db)
    held = await claim(db, task.id)
    assert held.task is not None
    async with db.session() as session:
        assert await claims.fail_task(
            session, held.task, worker_id="w1", error_type="provider_error", message="boom"
        )
        failed = await store.get_task(session, task.id, tenant=LOCAL_TENANT)
    assert failed.status == TaskStatus.FAILED
    assert failed.error == {"type": "provider_error", "message": "boom", "attempts": 1}


async def test_a_stale_run_of_the_same_worker_cannot_write(db: Database) -> None:
    """The worker claims its own task again after its lease ran out: only the new run writes."""
    task = await submit(db)
    old = await claim(db, task.id, "w1", lease=0.05)
    assert old.task is not None
    first = old.task
    stale = Task(id=first.id, attempts=first.attempts, conversation_id=first.conversation_id,
                 turn=first.turn, model=first.model, provider=first.provider)  # fmt: skip
    await asyncio.sleep(0.1)
    new = await claim(db, task.id, "w1")
    assert new.task is not None and new.task.attempts == 2
    assert not await complete(db, stale, "w1", text="stale")
    assert await complete(db, new.task, "w1", text="fresh")


async def test_a_claim_brings_its_conversations_context_header(db: Database) -> None:
    first = await submit(db)
    async with db.session() as session:
        await history.update_conversation(
            session, first.conversation_id, {"system_prompt": "be brief"}, tenant=LOCAL_TENANT
        )
    async with db.session() as session:
        await history.save_summary(session, first.conversation_id, "they said hi", 1)
    won = await claim(db, first.id)
    assert won.header == ("be brief", "they said hi", 1)
    assert won.task is not None
    assert (won.task.id, won.task.turn, won.task.prompt) == (first.id, 1, "hi")
    assert as_utc(won.task.created_at) == as_utc(first.created_at)
    assert won.task.started_at is not None
    async with db.session() as session:
        assert await history.context_header(session, first.conversation_id) == won.header


async def test_another_tenants_rows_are_out_of_scope(db: Database) -> None:
    """Reads, webhook deliveries and page cursors all answer as if another tenant's row were
    missing: its id is no cursor into this tenant's lists either."""
    mine = await submit(db)
    async with db.session() as session:
        submitted = await store.submit_task(
            session, owner=Owner("other"), spec=SPEC, prompt="theirs", conversation_id=None
        )
    theirs = submitted.task
    async with db.session() as session:
        with pytest.raises(TaskNotFound):
            await store.get_task(session, theirs.id, tenant=LOCAL_TENANT)
        with pytest.raises(TaskNotFound):
            await webhooks.deliveries_of(session, theirs.id, tenant=LOCAL_TENANT)
        with pytest.raises(ConversationNotFound):
            await history.conversation_messages(session, theirs.conversation_id, tenant="nobody")
        with pytest.raises(InvalidRequest):
            await store.list_tasks(session, tenant=LOCAL_TENANT, after=theirs.id)
        with pytest.raises(InvalidRequest):
            await history.list_conversations(
                session, tenant=LOCAL_TENANT, after=theirs.conversation_id
            )
        assert [t.id for t in await store.list_tasks(session, tenant=LOCAL_TENANT)] == [mine.id]
