"""A made file's bytes are written before the task that names them is committed: a store that
fails is a retryable failure of the attempt, never a task pointing at nothing; and bytes no row
names (a reply dropped because the task was no longer the worker's) are removed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aitasks.errors import FileStoreUnavailable
from aitasks.files import FileStorage, file_key
from aitasks.services import Services
from aitasks.store import claims
from aitasks.store.models import StoredFile, TaskStatus, utcnow
from aitasks.worker import Worker, calls
from aitasks.worker.calls import Reply
from aitasks.worker.run import TaskRun
from tests.support.in_process import in_process_services, set_task, stored, submit


class FlakyStorage(FileStorage):
    """A store in front of another that refuses the next `failures` writes."""

    name = "flaky"

    def __init__(self, inner: FileStorage, failures: int) -> None:
        self.inner, self.failures, self.puts = inner, failures, 0

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self.puts += 1
        if self.failures > 0:
            self.failures -= 1
            raise FileStoreUnavailable("the store is down (on purpose)")
        await self.inner.put(key, data, content_type=content_type)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        return await self.inner.open(key)

    async def delete(self, keys: Sequence[str]) -> None:
        await self.inner.delete(keys)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with in_process_services(tmp_path) as opened:
        yield opened


async def deliver(worker: Worker) -> None:
    [delivery] = await worker.services.queue.receive(
        worker.queues, worker.worker_id, count=1, wait_seconds=1
    )
    await worker.process(delivery)


async def file_rows(services: Services) -> int:
    async with services.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(StoredFile)) or 0)


async def test_a_store_blip_is_retried_in_place(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls, "backoff_seconds", lambda *_a, **_k: 0.0)
    services.storage = flaky = FlakyStorage(services.storage, failures=calls.STORE_TRIES - 1)
    task = await submit(services, "a red square", model="mock-image")

    await deliver(Worker(services))

    done = await stored(services, task.id)
    assert done.status == TaskStatus.SUCCESS and done.attempts == 1
    assert flaky.puts == calls.STORE_TRIES
    assert done.result is not None
    [file_id] = done.result["files"]
    assert (await services.storage.get(file_key(file_id))).startswith(b"\x89PNG")


async def test_a_store_that_stays_down_fails_the_attempt_and_the_task_runs_again(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls, "backoff_seconds", lambda *_a, **_k: 0.0)
    services.storage = flaky = FlakyStorage(services.storage, failures=calls.STORE_TRIES)
    task = await submit(services, "a red square", model="mock-image")
    worker = Worker(services)

    with pytest.raises(FileStoreUnavailable):
        await deliver(worker)  # the worker's loop logs it as an outage and goes on

    # Not finished, not failed, and no row names bytes that were never written.
    after_first = await stored(services, task.id)
    assert after_first.status == TaskStatus.RUNNING and after_first.result is None
    assert await file_rows(services) == 0

    # The lease runs out, the task is handed out again, the store is back: it ends well.
    await set_task(services, task.id, lease_until=utcnow() - timedelta(seconds=1))
    await services.queue.publish(after_first.queue, task.id)
    await deliver(worker)
    done = await stored(services, task.id)
    assert done.status == TaskStatus.SUCCESS and done.attempts == 2
    assert done.result is not None
    [file_id] = done.result["files"]
    assert (await flaky.get(file_key(file_id))).startswith(b"\x89PNG")


async def test_the_bytes_of_a_dropped_reply_are_removed(services: Services) -> None:
    task = await submit(services, "a red square", model="mock-image")
    worker = Worker(services)
    [delivery] = await services.queue.receive(
        worker.queues, worker.worker_id, count=1, wait_seconds=1
    )
    # The task is claimed, then taken from this worker (a cancel) before its outcome is written.
    async with services.db.session() as session:
        claim = await claims.claim_task(
            session, task.id, worker_id=worker.worker_id, lease_seconds=30
        )
    run = TaskRun.of(claim, delivery, services)
    key = file_key("f" * 32)
    await services.storage.put(key, b"made, never recorded", content_type="image/png")
    await set_task(services, task.id, status=TaskStatus.CANCELLED)

    reply = Reply(files=[claims.NewFile("f" * 32, "image/png", 20, key)])
    await worker.outcomes.complete(run, reply)
    await run.close()

    with pytest.raises(FileNotFoundError):
        await services.storage.open(key)
