"""Deadlines on the in-process backends: a task whose deadline passes while it waits ends EXPIRED
without a provider call (at its claim, or by the reconciler's sweep), its webhook says
`task.expired`, the turn after it goes on; `timeout` bounds a task's run across its attempts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aitasks.auth.caller import Caller
from aitasks.events.base import DONE, STATUS
from aitasks.lifecycle import submit_task
from aitasks.providers.mock import MockProvider
from aitasks.routing import ModelKind
from aitasks.services import Services
from aitasks.store.models import TERMINAL_STATUSES, Task, TaskStatus, WebhookDelivery
from aitasks.worker import Worker
from tests.support.in_process import in_process_services, long_ago, reaches, set_task, stored

SLOW = "[latency:30000]"


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with in_process_services(tmp_path, webhook_allow_private=True) as opened:
        yield opened


@pytest.fixture
def model_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The prompts of every chat call the mock receives."""
    calls: list[str] = []
    original = MockProvider.stream_chat

    def counted(self: MockProvider, request: Any) -> Any:
        calls.append(request.messages[-1].content)
        return original(self, request)

    monkeypatch.setattr(MockProvider, "stream_chat", counted)
    yield calls


async def chat(
    services: Services, prompt: str, conversation: str | None = None, **how: Any
) -> Task:
    task, _ = await submit_task(
        services, Caller(), ModelKind.CHAT, model="mock-chat", prompt=prompt,
        conversation_id=conversation, **how,
    )  # fmt: skip
    return task


async def deliver_one(worker: Worker) -> None:
    (delivery,) = await worker.services.queue.receive(
        worker.queues, worker.worker_id, count=1, wait_seconds=1
    )
    await worker.process(delivery)


async def test_a_task_past_its_deadline_at_its_claim_expires_uncalled(
    services: Services, model_calls: list[str]
) -> None:
    first = await chat(services, "too late", expires_after=60,
                       callback_url="http://127.0.0.1:9/hook")  # fmt: skip
    second = await chat(services, "in time", first.conversation_id)
    await set_task(services, first.id, expires_at=long_ago(1))
    worker = Worker(services)
    await deliver_one(worker)  # the first turn (the second waits on it)
    expired = await stored(services, first.id)
    assert expired.status == TaskStatus.EXPIRED
    assert (expired.attempts, expired.started_at, expired.worker_id) == (0, None, None)
    assert expired.error is not None and expired.error["type"] == "expired"
    assert model_calls == []
    events = await services.events.read(first.id, after=None, wait_seconds=0)
    assert [(e.type, e.data.get("status")) for e in events][-2:] == [
        (STATUS, TaskStatus.EXPIRED), (DONE, None)
    ]  # fmt: skip
    async with services.db.session() as session:
        hooks = (await session.scalars(select(WebhookDelivery.event))).all()
    assert hooks == ["task.expired"]
    # The turn after it was released, and runs.
    for _ in range(2):  # the second turn's own entry (dropped: it was waiting) and its release
        await deliver_one(worker)
        if (await stored(services, second.id)).status == TaskStatus.SUCCESS:
            break
    assert (await stored(services, second.id)).status == TaskStatus.SUCCESS
    assert model_calls == ["in time"]


async def test_the_reconciler_expires_what_waits_past_its_deadline(
    services: Services, model_calls: list[str]
) -> None:
    waiting = [await chat(services, f"queued {n}", expires_after=30) for n in range(3)]
    fresh = await chat(services, "not yet", expires_after=3600)
    for task in waiting:
        await set_task(services, task.id, expires_at=long_ago(1))
    worker = Worker(services)
    await worker.reconciler.reconcile_once()
    statuses = [(await stored(services, t.id)).status for t in [*waiting, fresh]]
    assert statuses == [TaskStatus.EXPIRED] * 3 + [TaskStatus.PENDING]
    # Their queue entries are dropped when they come up; only the fresh task runs.
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    try:
        assert (await reaches(services, fresh.id, TERMINAL_STATUSES)).status == TaskStatus.SUCCESS
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
    assert model_calls == ["not yet"]
    assert await services.queue.depth("mock") == 0


async def test_a_deadline_met_changes_nothing(services: Services) -> None:
    task = await chat(services, "quick", expires_after=60)
    await deliver_one(Worker(services))
    done = await stored(services, task.id)
    assert done.status == TaskStatus.SUCCESS and done.expires_at is not None


async def test_timeout_stops_a_run_that_takes_too_long(services: Services) -> None:
    task = await chat(services, f"slow {SLOW}", run_timeout=1)
    started = asyncio.get_running_loop().time()
    await deliver_one(Worker(services))
    failed = await stored(services, task.id)
    assert failed.status == TaskStatus.FAILED and failed.error is not None
    assert failed.error["type"] == "timeout" and "1 seconds" in failed.error["message"]
    assert 0.9 < asyncio.get_running_loop().time() - started < 5


async def test_timeout_counts_from_the_first_start_across_attempts(
    services: Services, model_calls: list[str]
) -> None:
    task = await chat(services, "taken over", run_timeout=60)
    # Its first worker started it long ago and died; the lease ran out.
    await set_task(
        services, task.id, status=TaskStatus.RUNNING, attempts=1, started_at=long_ago(120),
        lease_until=long_ago(1), worker_id="dead",
    )  # fmt: skip
    await deliver_one(Worker(services))
    failed = await stored(services, task.id)
    assert failed.status == TaskStatus.FAILED and failed.error is not None
    assert failed.error["type"] == "timeout"
    assert model_calls == []
