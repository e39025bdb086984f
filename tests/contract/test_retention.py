"""Retention on SQLite and PostgreSQL: what is older than its setting goes, in batches, and
nothing else; `would_purge` (what `aitasks purge --dry-run` prints) counts the same; the
reconciler runs the purge under its lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from aitasks.errors import FileStoreUnavailable
from aitasks.files import file_key
from aitasks.lifecycle.retention import purge, would_purge
from aitasks.services import Services
from aitasks.store.models import (
    Conversation,
    Message,
    StoredFile,
    Task,
    TaskStatus,
    WebhookDelivery,
    utcnow,
)
from aitasks.worker import Worker
from aitasks.worker.reconciler import Reconciler
from tests.support.backends import DATABASES
from tests.support.in_process import in_process_services, stored, submit

DAY = timedelta(days=1)


@pytest.fixture(params=DATABASES)
async def services(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Services]:
    settings: dict[str, Any] = {
        "task_retention_days": 30,
        "webhook_retention_days": 7,
        "file_retention_days": None,
        "conversation_retention_days": None,
    }
    if request.param == "postgresql":
        settings["database_url"] = request.getfixturevalue("postgres_url")
    async with in_process_services(tmp_path, **settings) as opened:
        yield opened


async def finish(services: Services, prompt: str, *, model: str = "mock-chat", **kw: Any) -> Task:
    """A task submitted and run to its end by a worker."""
    task = await submit(services, prompt, model=model, **kw)
    worker = Worker(services)
    [delivery] = await services.queue.receive(
        worker.queues, worker.worker_id, count=1, wait_seconds=1
    )
    await worker.process(delivery)
    return await stored(services, task.id)


async def age(services: Services, model: Any, ids: list[str], days: float, **columns: str) -> None:
    """Move rows' times `days` into the past."""
    moment = utcnow() - days * DAY
    async with services.db.session() as session, session.begin():
        await session.execute(
            update(model).where(model.id.in_(ids)).values(**dict.fromkeys(columns, moment))
        )


async def count(services: Services, model: Any, *where: Any) -> int:
    async with services.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def test_old_finished_tasks_go_and_their_messages_stay(services: Services) -> None:
    old = await finish(services, "long ago")
    recent = await finish(services, "yesterday", conversation_id=old.conversation_id)
    waiting = await submit(services, "still waiting", publish=False)
    await age(services, Task, [old.id], 31, finished_at="x", created_at="y")
    await age(services, Task, [recent.id], 1, finished_at="x")
    await age(services, Task, [waiting.id], 40, created_at="x")

    assert await would_purge(services.settings, services.db) == {
        "files": 0, "tasks": 1, "webhook_deliveries": 0, "conversations": 0
    }  # fmt: skip
    purged = await purge(services)

    assert purged.counts["tasks"] == 1 and purged.finished
    assert await count(services, Task, Task.id == old.id) == 0
    assert await count(services, Task, Task.id.in_([recent.id, waiting.id])) == 2
    # The conversation keeps both turns; the purged one's messages no longer name a task.
    async with services.db.session() as session:
        rows = (
            await session.execute(
                select(Message.turn, Message.role, Message.task_id)
                .where(Message.conversation_id == old.conversation_id)
                .order_by(Message.turn, Message.role)
            )
        ).all()
    assert [(r.turn, r.role, r.task_id) for r in rows] == [
        (1, "assistant", None), (1, "user", None),
        (2, "assistant", recent.id), (2, "user", recent.id),
    ]  # fmt: skip
    assert (await would_purge(services.settings, services.db))["tasks"] == 0


async def test_a_task_stays_while_its_files_do_and_files_go_by_their_own_setting(
    services: Services,
) -> None:
    image = await finish(services, "a red square", model="mock-image")
    assert image.result is not None
    [file_id] = image.result["files"]
    await age(services, Task, [image.id], 100, finished_at="x")
    await age(services, StoredFile, [file_id], 100, created_at="x")

    await purge(services)  # files are kept (no file retention): so is their task
    assert await count(services, Task, Task.id == image.id) == 1
    assert (await services.storage.get(file_key(file_id))).startswith(b"\x89PNG")

    services.settings = services.settings.model_copy(update={"file_retention_days": 90})
    assert await would_purge(services.settings, services.db) == {
        "files": 1, "tasks": 1, "webhook_deliveries": 0, "conversations": 0
    }  # fmt: skip
    purged = await purge(services)
    assert (purged.counts["files"], purged.counts["tasks"]) == (1, 1)
    with pytest.raises(FileNotFoundError):
        await services.storage.open(file_key(file_id))
    assert await count(services, StoredFile) == 0


async def test_settled_webhook_deliveries_go_before_their_task(services: Services) -> None:
    task = await finish(services, "with a webhook")
    now = utcnow()
    rows = [
        ("old-delivered", "delivered", now - 8 * DAY),
        ("old-failed", "failed", now - 8 * DAY),
        ("old-pending", "pending", now - 8 * DAY),  # still the dispatcher's
        ("new-delivered", "delivered", now - DAY),
    ]
    async with services.db.session() as session, session.begin():
        for delivery_id, status, when in rows:
            session.add(
                WebhookDelivery(
                    id=delivery_id, task_id=task.id, event="task.succeeded",
                    url="http://example.test/hook", status=status, next_attempt_at=when,
                )
            )  # fmt: skip

    assert (await would_purge(services.settings, services.db))["webhook_deliveries"] == 2
    assert (await purge(services)).counts["webhook_deliveries"] == 2
    async with services.db.session() as session:
        left = set(await session.scalars(select(WebhookDelivery.id)))
    assert left == {"old-pending", "new-delivered"}
    assert await count(services, Task, Task.id == task.id) == 1


async def test_idle_conversations_go_with_their_files_when_asked(services: Services) -> None:
    idle = await finish(services, "an old picture", model="mock-image")
    busy = await submit(services, "unfinished", publish=False)
    active = await finish(services, "recent")
    await age(services, Conversation, [idle.conversation_id, busy.conversation_id], 400,
              updated_at="x")  # fmt: skip
    assert idle.result is not None
    [file_id] = idle.result["files"]

    assert (await purge(services)).counts["conversations"] == 0  # kept until deleted by default
    services.settings = services.settings.model_copy(update={"conversation_retention_days": 365})
    assert (await would_purge(services.settings, services.db))["conversations"] == 1
    assert (await purge(services)).counts["conversations"] == 1

    async with services.db.session() as session:
        left = set(await session.scalars(select(Conversation.id)))
    assert left == {busy.conversation_id, active.conversation_id}
    with pytest.raises(FileNotFoundError):
        await services.storage.open(file_key(file_id))


async def test_a_purge_works_in_batches_within_its_budget(services: Services) -> None:
    done = [await finish(services, f"task {n}") for n in range(5)]
    await age(services, Task, [t.id for t in done], 31, finished_at="x")

    first = await purge(services, batch=2, budget_seconds=0)
    assert (first.counts["tasks"], first.batches, first.finished) == (2, 1, False)
    second = await purge(services, batch=2)
    assert second.counts["tasks"] == 3 and second.finished
    assert second.batches == 3  # 2 + 1, then an empty look at the deliveries
    assert second.longest_seconds > 0


async def test_the_reconciler_purges_under_its_lock(services: Services) -> None:
    old = await finish(services, "long ago")
    await age(services, Task, [old.id], 31, finished_at="x")
    reconciler = Reconciler(services)
    reconciler.next_purge = 0  # due now
    stop = asyncio.Event()
    running = asyncio.create_task(reconciler.run(stop))
    try:
        async with asyncio.timeout(10):
            while await count(services, Task, Task.id == old.id):  # noqa: ASYNC110 (a poll)
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running
    assert reconciler.next_purge > 0  # finished: the next one is minutes away
    assert old.status == TaskStatus.SUCCESS


async def test_a_file_store_that_fails_keeps_the_files_and_the_rest_goes_on(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = await finish(services, "a red square", model="mock-image")
    chat = await finish(services, "old words")
    assert image.result is not None
    [file_id] = image.result["files"]
    await age(services, Task, [image.id, chat.id], 100, finished_at="x")
    await age(services, StoredFile, [file_id], 100, created_at="x")
    services.settings = services.settings.model_copy(update={"file_retention_days": 90})

    async def down(keys: object) -> None:
        raise FileStoreUnavailable("the store is down (on purpose)")

    monkeypatch.setattr(services.storage, "delete", down)
    purged = await purge(services)

    assert (purged.counts["files"], purged.counts["tasks"], purged.finished) == (0, 1, False)
    assert await count(services, StoredFile) == 1  # kept: its bytes could not be removed
    assert await count(services, Task, Task.id == image.id) == 1
    assert await count(services, Task, Task.id == chat.id) == 0
