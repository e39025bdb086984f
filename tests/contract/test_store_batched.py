"""Claims and finishes many at a time, on SQLite and on PostgreSQL: one statement claims exactly
the tasks a claim one by one would, with the same attempt numbers; one transaction finishes
exactly the tasks still held; and a finish whose acknowledgement was lost is dropped when its
delivery comes back."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from aitasks.queue.base import TaskQueue
from aitasks.routing import ModelTable
from aitasks.store import claims, finishes
from aitasks.store import tasks as store
from aitasks.store.database import Database
from aitasks.store.models import LOCAL_TENANT, Message, Task, TaskStatus, WebhookDelivery, utcnow
from aitasks.store.tasks import Callback, Owner
from tests.support.backends import REDELIVER_AFTER
from tests.support.statements import connection_cut_at, statements

SPEC = ModelTable.load(environ={}).resolve("mock-chat")
OWNER = Owner(LOCAL_TENANT)
Outcome = claims.ClaimOutcome


async def submit(
    db: Database,
    conversation_id: str | None = None,
    *,
    expires_in: float | None = None,
    callback_url: str | None = None,
) -> Task:
    scheduling = None
    if expires_in is not None:
        scheduling = {"expires_at": utcnow() + timedelta(seconds=expires_in)}
    callback = Callback(callback_url, ["task.running"]) if callback_url else None
    async with db.session() as session:
        submission = await store.submit_task(
            session, owner=OWNER, spec=SPEC, prompt="hi", conversation_id=conversation_id,
            scheduling=scheduling, callback=callback,
        )  # fmt: skip
        return submission.task


async def claim_many(
    db: Database,
    ids: list[str],
    worker: str = "w1",
    lease: float = 30,
    *,
    worker_path: bool = False,
) -> list[claims.Claim]:
    """`claim_tasks`, or the worker's `claim_deliveries` (its plain tasks in one autocommitted
    statement first), which must come to the same claims."""
    if worker_path:
        return await claims.claim_deliveries(db, ids, worker_id=worker, lease_seconds=lease)
    async with db.session() as session:
        return await claims.claim_tasks(session, ids, worker_id=worker, lease_seconds=lease)


async def held(db: Database, task_id: str, worker: str = "w1", lease: float = 30) -> Task:
    (got,) = await claim_many(db, [task_id], worker, lease)
    assert got.outcome is Outcome.CLAIMED and got.task is not None
    return got.task


async def finish(
    db: Database, outcomes: list[finishes.Outcome], worker: str = "w1"
) -> list[finishes.Finished | None]:
    async with db.session() as session:
        return await finishes.finish_tasks(session, outcomes, worker_id=worker)


async def row(db: Database, task_id: str) -> Task:
    async with db.session() as session:
        task = await session.get(Task, task_id, populate_existing=True)
        assert task is not None
        return task


@pytest.mark.parametrize("worker_path", [False, True], ids=["claim_tasks", "claim_deliveries"])
async def test_one_statement_claims_a_batch_of_claimable_tasks(
    db: Database, worker_path: bool
) -> None:
    tasks = [await submit(db) for _ in range(5)]
    async with statements(db) as seen:
        got = await claim_many(db, [t.id for t in tasks], worker_path=worker_path)
    assert [c.outcome for c in got] == [Outcome.CLAIMED] * 5
    assert [c.task.id for c in got if c.task] == [t.id for t in tasks]
    assert all(c.task and c.task.attempts == 1 and c.task.worker_id == "w1" for c in got)
    assert [s.verb for s in seen if s.verb not in ("BEGIN", "COMMIT")] == ["UPDATE"]


@pytest.mark.parametrize("worker_path", [False, True], ids=["claim_tasks", "claim_deliveries"])
async def test_a_mixed_batch_claims_exactly_the_claimable_ones(
    db: Database, worker_path: bool
) -> None:
    fresh = await submit(db)
    hooked = await submit(db, callback_url="https://example.com/hook")
    cancelled = await submit(db)
    async with db.session() as session:
        await store.cancel_task(session, cancelled.id, tenant=LOCAL_TENANT)
    late = await submit(db, expires_in=-1)
    busy = await submit(db)
    await held(db, busy.id, "w2")
    abandoned = await submit(db)
    await held(db, abandoned.id, "dead", lease=0.05)
    # A conversation whose first turn is not in the batch, and one with both turns in it.
    outside = await submit(db)
    out_of_turn = await submit(db, outside.conversation_id)
    first = await submit(db)
    second = await submit(db, first.conversation_id)
    finished = await submit(db)
    await finish(db, [finishes.success(await held(db, finished.id), text="ok")])
    await asyncio.sleep(0.1)  # the dead worker's lease runs out

    order = [
        fresh, cancelled, late, busy, abandoned, out_of_turn, second, first, finished, hooked,
        fresh,
    ]  # fmt: skip
    got = await claim_many(db, [t.id for t in order] + ["no-such-task"], worker_path=worker_path)
    assert [c.outcome for c in got] == [
        Outcome.CLAIMED, Outcome.FINISHED, Outcome.EXPIRED, Outcome.BUSY, Outcome.CLAIMED,
        Outcome.WAITING, Outcome.WAITING, Outcome.CLAIMED, Outcome.FINISHED, Outcome.CLAIMED,
        Outcome.BUSY,  # the same id again: claimed once
        Outcome.FINISHED,
    ]  # fmt: skip
    attempts = {c.task.id: c.task.attempts for c in got if c.outcome is Outcome.CLAIMED and c.task}
    assert attempts == {fresh.id: 1, abandoned.id: 2, first.id: 1, hooked.id: 1}
    # The callback's first claim wrote its webhook row in the claim's transaction.
    async with db.session() as session:
        hooks = (
            await session.execute(select(WebhookDelivery.task_id, WebhookDelivery.event))
        ).all()
    assert sorted(tuple(h) for h in hooks) == [(hooked.id, "task.running")]
    # What each row says now: the expired one never ran, the others are as they were.
    expired = await row(db, late.id)
    assert (expired.status, expired.attempts, expired.started_at) == (TaskStatus.EXPIRED, 0, None)
    assert (await row(db, busy.id)).worker_id == "w2"
    assert (await row(db, abandoned.id)).worker_id == "w1"
    for waiting in (out_of_turn, second):
        assert (await row(db, waiting.id)).status == TaskStatus.PENDING
    assert (await row(db, cancelled.id)).status == TaskStatus.CANCELLED


async def test_a_flush_finishes_the_tasks_it_still_holds_and_only_those(db: Database) -> None:
    ok, bad, lost, cancelled = [await submit(db) for _ in range(4)]
    later = await submit(db, ok.conversation_id)
    ok_task, bad_task, cancelled_task = [await held(db, t.id) for t in (ok, bad, cancelled)]
    stale = await held(db, lost.id, lease=0.05)
    await asyncio.sleep(0.1)
    await held(db, lost.id, "w2")  # taken over: the stale claim may not write
    async with db.session() as session:
        await store.cancel_task(session, cancelled.id, tenant=LOCAL_TENANT)

    written = await finish(
        db,
        [
            finishes.success(ok_task, text="fine", usage={"total_tokens": 3}),
            finishes.failure(bad_task, error_type="provider_error", message="boom"),
            finishes.success(stale, text="stale"),
            finishes.success(cancelled_task, text="too late"),
        ],
    )
    assert written[0] is not None and written[0].next_turn is not None
    assert written[0].next_turn.id == later.id
    assert written[1] == finishes.Finished(None)
    assert written[2:] == [None, None]
    done, failed = await row(db, ok.id), await row(db, bad.id)
    assert (done.status, done.result, done.usage) == (
        TaskStatus.SUCCESS, {"text": "fine"}, {"total_tokens": 3}
    )  # fmt: skip
    assert failed.status == TaskStatus.FAILED
    assert failed.error == {"type": "provider_error", "message": "boom", "attempts": 1}
    assert (await row(db, lost.id)).status == TaskStatus.RUNNING
    assert (await row(db, cancelled.id)).status == TaskStatus.CANCELLED
    async with db.session() as session:
        assistant = select(Message.task_id, Message.content).where(Message.role == "assistant")
        replies = (await session.execute(assistant)).all()
    assert [tuple(r) for r in replies] == [(ok.id, "fine")]


async def test_a_finish_whose_ack_was_lost_is_dropped_when_delivered_again(
    db: Database, queue: TaskQueue
) -> None:
    """The worker died between the finish's commit and its acknowledgement: the deliveries
    come back to another worker, whose claim finds the tasks finished (so it acknowledges
    them and runs nothing), and the results stand."""
    tasks = [await submit(db) for _ in range(3)]
    for task in tasks:
        await queue.publish(task.queue, task.id)
    received = await queue.receive([tasks[0].queue], "dies", count=3, wait_seconds=1)
    assert sorted(d.task_id for d in received) == sorted(t.id for t in tasks)
    got = await claim_many(db, [d.task_id for d in received], "dies")
    outcomes = [finishes.success(c.task, text=f"r{i}") for i, c in enumerate(got) if c.task]
    assert all(await finish(db, outcomes, "dies"))
    # ...and it dies here, before acknowledging.
    await asyncio.sleep(REDELIVER_AFTER * 1.5)
    again = await queue.receive([tasks[0].queue], "survivor", count=3, wait_seconds=1)
    assert sorted(d.message_id for d in again) == sorted(d.message_id for d in received)
    retried = await claim_many(db, [d.task_id for d in again], "survivor")
    assert [c.outcome for c in retried] == [Outcome.FINISHED] * 3
    await queue.ack_many(again)
    assert await queue.receive([tasks[0].queue], "late", count=3, wait_seconds=0.05) == []
    for i, delivery in enumerate(received):
        stored = await row(db, delivery.task_id)
        assert (stored.status, stored.attempts, stored.result) == (
            TaskStatus.SUCCESS, 1, {"text": f"r{i}"}
        )  # fmt: skip


async def test_a_value_too_long_is_refused_not_cut_and_a_long_served_model_is_cut(
    db: Database,
) -> None:
    """The flush's arrays carry strings without their columns' lengths (an explicit cast to
    VARCHAR(n) cuts silently): on PostgreSQL a value too long fails the flush, which writes
    nothing, as an INSERT of it would. The one exception is deliberate: the model a provider
    says it served is cut to its column rather than refuse the result it came with."""
    task = await held(db, (await submit(db)).id)
    if db.engine.dialect.name == "postgresql":  # SQLite keeps any length
        too_long = finishes.success(task, text="x", provider="p" * 51)
        with pytest.raises(Exception, match="too long"):
            await finish(db, [too_long])
        assert (await row(db, task.id)).status == TaskStatus.RUNNING

    long_name = "m" * (finishes.SERVED_MODEL_CHARS + 40)
    assert await finish(db, [finishes.success(task, text="ok", served_model=long_name)])
    done = await row(db, task.id)
    assert (done.status, done.served_model) == (
        TaskStatus.SUCCESS, long_name[: finishes.SERVED_MODEL_CHARS]
    )  # fmt: skip


async def test_a_flush_is_never_both_written_and_failed(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next turns' read failing after the finishing write. A flush that had written and
    then raised would be written again by the worker, find its tasks finished by someone and
    drop the reply, its files and its `done`. On PostgreSQL the finish has committed alone by
    then: it stands, and the next turn is left to the reconciler. On SQLite the read is in the
    flush's transaction: nothing is written, and the retry finds the task still held."""
    first = await submit(db)
    later = await submit(db, first.conversation_id)
    task = await held(db, first.id)
    if db.engine.dialect.name == "postgresql":
        # The flush's connection dies as the read is sent, as in an outage.
        url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with connection_cut_at(url, finishes.NEXT_TURNS_SQL) as cut:
            written = await finish(db, [finishes.success(task, text="fine")])
        assert cut and written == [finishes.Finished()]
        # The cut connection went back to the pool, as connections do in an outage (no ping on
        # checkout: its next user is told the database is unavailable). Start afresh.
        await db.engine.dispose()
        assert (await row(db, first.id)).status == TaskStatus.SUCCESS
        assert (await row(db, later.id)).status == TaskStatus.PENDING
        return

    def broken(_row: object) -> None:
        raise RuntimeError("the next turn could not be read")

    monkeypatch.setattr(finishes, "queued_task", broken)
    with pytest.raises(RuntimeError, match="next turn"):
        await finish(db, [finishes.success(task, text="fine")])
    assert (await row(db, first.id)).status == TaskStatus.RUNNING
    async with db.session() as session:
        replies = select(Message).where(Message.role == "assistant")
        assert (await session.execute(replies)).all() == []
    monkeypatch.undo()
    (written,) = await finish(db, [finishes.success(task, text="fine")])
    assert written is not None and written.next_turn is not None
    assert written.next_turn.id == later.id
    assert (await row(db, first.id)).status == TaskStatus.SUCCESS
