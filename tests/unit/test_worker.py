"""The worker on the in-process backends: one delivery's life (claim, call, outcome, ack, next
turn), retries and failures, cancellation, the lease, and hand-back at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from aitasks.events.base import DELTA, DONE, STATUS
from aitasks.files import file_key
from aitasks.services import Services
from aitasks.store.models import TaskStatus
from aitasks.worker import Worker
from aitasks.worker.runner import MAX_ATTEMPTS_IN_ALL
from tests.support.in_process import in_process_services, reaches, replies, set_task, stored, submit

# A reply that would take this long, unless its call is stopped.
SLOW = "[latency:30000]"

ServicesFactory = Callable[..., AbstractAsyncContextManager[Services]]


@pytest.fixture
def services_with(tmp_path: Path) -> ServicesFactory:
    """In-process services with settings of the test's own: `async with services_with(**s)`."""
    return lambda **overrides: in_process_services(tmp_path, **overrides)


@pytest.fixture
async def services(services_with: ServicesFactory) -> AsyncIterator[Services]:
    async with services_with() as opened:
        yield opened


async def deliver_one(worker: Worker) -> None:
    """Take the next delivery off the worker's queues and process it to its end."""
    deliveries = await worker.services.queue.receive(
        worker.queues, worker.worker_id, count=1, wait_seconds=1
    )
    assert len(deliveries) == 1
    await worker.process(deliveries[0])


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Event]:
    """The worker's loop running in the background; set the event it yields to stop it early."""
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)


async def events_of(services: Services, task_id: str) -> list[tuple[str, dict[str, Any]]]:
    events = await services.events.read(task_id, after=None, wait_seconds=0)
    return [(event.type, event.data) for event in events]


async def all_acknowledged(services: Services, within: float = 5) -> None:
    """Wait until the mock queue holds nothing: the worker has acknowledged its delivery."""
    async with asyncio.timeout(within):
        while True:
            if await services.queue.depth("mock") == 0:
                return
            await asyncio.sleep(0.01)


async def test_a_submitted_task_runs_to_success_with_its_reply_stored(services: Services) -> None:
    task = await submit(services, "hello there")
    worker = Worker(services)
    await deliver_one(worker)

    done = await stored(services, task.id)
    assert done.status == TaskStatus.SUCCESS
    assert done.attempts == 1
    assert done.worker_id == worker.worker_id
    assert done.served_model == "mock-chat"
    assert done.result is not None and done.result["text"].startswith('Mock reply to "hello there"')
    assert done.usage is not None and done.usage["total_tokens"] > 0
    [reply] = await replies(services, task.conversation_id)
    assert (reply.turn, reply.task_id, reply.content) == (1, task.id, done.result["text"])
    assert await services.queue.depth("mock") == 0  # acknowledged

    events = await events_of(services, task.id)
    assert events[0] == (STATUS, {"status": TaskStatus.RUNNING, "attempt": 1})
    assert "".join(data["delta"] for kind, data in events if kind == DELTA) == done.result["text"]
    assert events[-2:] == [(STATUS, {"status": TaskStatus.SUCCESS}), (DONE, {})]


async def test_an_image_task_stores_its_files(services: Services) -> None:
    task = await submit(services, "a red square", model="mock-image")
    await deliver_one(Worker(services))

    done = await stored(services, task.id)
    assert done.status == TaskStatus.SUCCESS
    assert done.result is not None
    [file_id] = done.result["files"]
    [reply] = await replies(services, task.conversation_id)
    assert reply.files == [file_id]
    stored_bytes = await services.storage.get(file_key(file_id))
    assert stored_bytes.startswith(b"\x89PNG")


async def test_a_retryable_failure_is_tried_again_under_the_same_claim(services: Services) -> None:
    task = await submit(services, "[fail-first:2] third time lucky")
    await deliver_one(Worker(services))

    done = await stored(services, task.id)
    assert done.status == TaskStatus.SUCCESS
    assert done.attempts == 3
    statuses = [data for kind, data in await events_of(services, task.id) if kind == STATUS]
    assert [s.get("attempt") for s in statuses] == [1, 2, 3, None]
    assert statuses[-1] == {"status": TaskStatus.SUCCESS}


async def test_a_failure_that_stays_retryable_fails_after_max_attempts(services: Services) -> None:
    task = await submit(services, "[fail:retryable] never")
    await deliver_one(Worker(services))

    done = await stored(services, task.id)
    assert done.status == TaskStatus.FAILED
    assert done.attempts == services.models.resolve("mock-chat").max_attempts
    assert done.error is not None and done.error["type"] == "provider_server_error"
    assert await replies(services, task.conversation_id) == []


async def test_a_failure_that_is_not_retryable_fails_the_task_at_once(services: Services) -> None:
    task = await submit(services, "[fail:fatal] refused")
    await deliver_one(Worker(services))

    done = await stored(services, task.id)
    assert done.status == TaskStatus.FAILED
    assert done.attempts == 1
    assert done.error is not None
    assert done.error["type"] == "provider_bad_request"
    assert done.error["attempts"] == 1
    events = await events_of(services, task.id)
    assert events[-2:] == [(STATUS, {"status": TaskStatus.FAILED}), (DONE, {})]


async def test_a_failing_model_falls_back_to_the_next(
    services_with: ServicesFactory, tmp_path: Path
) -> None:
    table = tmp_path / "models.toml"
    table.write_text(
        '[models."mock-primary"]\nkind = "chat"\nprovider = "mock"\nqueue = "mock"\n'
        'max_attempts = 2\nfallbacks = ["mock-chat"]\n'
    )
    async with services_with(models_file=table) as services:
        task = await submit(services, "[fail-on:mock-primary] hi", model="mock-primary")
        await deliver_one(Worker(services))

        done = await stored(services, task.id)
        assert done.status == TaskStatus.SUCCESS
        assert done.served_model == "mock-chat"
        assert done.attempts == 3  # two on the primary, one on the fallback


async def test_a_task_claimed_too_often_is_failed_without_a_call(services: Services) -> None:
    task = await submit(services, "crashes every worker")
    await set_task(services, task.id, attempts=MAX_ATTEMPTS_IN_ALL)
    await deliver_one(Worker(services))

    done = await stored(services, task.id)
    assert done.status == TaskStatus.FAILED
    assert done.error is not None and done.error["type"] == "too_many_attempts"
    assert await replies(services, task.conversation_id) == []
    assert await services.queue.depth("mock") == 0


async def test_a_duplicate_delivery_of_a_finished_task_is_dropped(services: Services) -> None:
    task = await submit(services, "once")
    worker = Worker(services)
    await deliver_one(worker)
    await services.queue.publish("mock", task.id)  # delivered again
    await deliver_one(worker)

    done = await stored(services, task.id)
    assert (done.status, done.attempts) == (TaskStatus.SUCCESS, 1)
    assert len(await replies(services, task.conversation_id)) == 1
    assert await services.queue.depth("mock") == 0


async def test_a_later_turn_waits_for_the_earlier_and_is_started_by_its_end(
    services: Services,
) -> None:
    first = await submit(services, "first", publish=False)
    second = await submit(services, "second", conversation_id=first.conversation_id)
    worker = Worker(services)
    await deliver_one(worker)  # the second turn: its earlier turn has not run, so it waits
    assert (await stored(services, second.id)).status == TaskStatus.PENDING
    assert await services.queue.depth("mock") == 0

    await services.queue.publish("mock", first.id)
    await deliver_one(worker)  # the first turn, whose end publishes the second
    assert await services.queue.queued_task_ids("mock") == {second.id}
    await deliver_one(worker)

    later = await stored(services, second.id)
    assert later.status == TaskStatus.SUCCESS
    assert later.result is not None and "given 1 earlier turn" in later.result["text"]
    assert [m.turn for m in await replies(services, first.conversation_id)] == [1, 2]


async def test_a_cancelled_tasks_provider_call_is_stopped(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    task = await submit(services, f"{SLOW} take your time")
    caplog.set_level(logging.INFO, logger="aitasks")
    async with running(Worker(services)):
        await reaches(services, task.id, {TaskStatus.RUNNING})
        await asyncio.sleep(0.05)  # the call is under way
        # What the gateway's cancel does: the status first, then the announcement.
        await set_task(services, task.id, status=TaskStatus.CANCELLED)
        await services.queue.announce_cancel(task.id)
        await all_acknowledged(services)

    assert f"task {task.id} cancelled: stopping its provider call" in caplog.text
    assert (await stored(services, task.id)).status == TaskStatus.CANCELLED
    assert await replies(services, task.conversation_id) == []


async def test_a_lease_renewal_that_finds_the_task_gone_stops_the_call(
    services_with: ServicesFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aitasks")
    async with services_with(lease_seconds=0.3) as services:
        task = await submit(services, f"{SLOW} slow")
        async with running(Worker(services)):
            await reaches(services, task.id, {TaskStatus.RUNNING})
            # Cancelled with no announcement (a worker that missed it): the next renewal notices.
            await set_task(services, task.id, status=TaskStatus.CANCELLED)
            await all_acknowledged(services)

        assert f"task {task.id}: stopped (cancelled, or its lease was lost)" in caplog.text
        assert (await stored(services, task.id)).status == TaskStatus.CANCELLED
        assert await replies(services, task.conversation_id) == []


async def test_a_running_task_is_handed_back_at_shutdown(services_with: ServicesFactory) -> None:
    async with services_with(shutdown_grace_seconds=0.05) as services:
        task = await submit(services, f"{SLOW} unfinished business")
        async with running(Worker(services)) as stop:
            await reaches(services, task.id, {TaskStatus.RUNNING})
            stop.set()

        back = await stored(services, task.id)
        assert back.status == TaskStatus.PENDING
        assert (back.worker_id, back.lease_until) == (None, None)
        assert back.attempts == 1
        assert await services.queue.queued_task_ids("mock") == {task.id}  # published again
        events = await events_of(services, task.id)
        assert events[-1] == (STATUS, {"status": TaskStatus.PENDING})

        # Another worker takes it at once and finishes it.
        await set_task(services, task.id, prompt="quick now")
        await deliver_one(Worker(services))
        assert (await stored(services, task.id)).status == TaskStatus.SUCCESS
