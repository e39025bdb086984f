"""Services on the in-process backends (SQLite in a folder, the in-process queue, events and limits
in memory), for tests that drive the worker's own classes (`Worker`, `Reconciler`) without a
gateway: submit as the gateway does, then read back what was stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from aitasks.auth.caller import LOCAL_TENANT
from aitasks.config import Settings
from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from aitasks.store.models import Message, Task, utcnow


@asynccontextmanager
async def in_process_services(folder: Path, **overrides: Any) -> AsyncIterator[Services]:
    """Services on a fresh SQLite database under `folder` (schema made) and the in-process
    queue, event log and limits; quick mock replies and retries unless `overrides` say else."""
    values: dict[str, Any] = {
        "data_dir": folder,
        "mock_latency_ms": 0,
        "retry_base_seconds": 0.01,
        **overrides,
    }
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    db = Database(settings.sqlalchemy_url)
    await upgrade(db)
    await db.dispose()
    services = Services.open(settings, in_process_queue=True)
    try:
        yield services
    finally:
        await services.close()


async def submit(
    services: Services,
    prompt: str,
    *,
    model: str = "mock-chat",
    conversation_id: str | None = None,
    publish: bool = True,
) -> Task:
    """Store a task as the gateway's submit does, and publish it to its queue unless told not to
    (a publish the queue lost)."""
    spec = services.models.resolve(model)
    async with services.db.session() as session:
        submission = await store.submit_task(
            session,
            owner=store.Owner(LOCAL_TENANT),
            spec=spec,
            prompt=prompt,
            conversation_id=conversation_id,
        )
    if publish:
        await services.queue.publish(spec.queue, submission.task.id)
    return submission.task


async def stored(services: Services, task_id: str) -> Task:
    """The task's row as it is stored now."""
    async with services.db.session() as session:
        task = await session.get(Task, task_id, populate_existing=True)
    assert task is not None, task_id
    return task


async def replies(services: Services, conversation_id: str) -> list[Message]:
    """The conversation's assistant messages, in turn order."""
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.role == "assistant")
        .order_by(Message.turn)
    )
    async with services.db.session() as session:
        return list((await session.scalars(query)).all())


async def set_task(services: Services, task_id: str, **values: Any) -> None:
    """Change a stored task behind the worker's back (as a cancel, or time passing, would)."""
    async with services.db.session() as session, session.begin():
        await session.execute(update(Task).where(Task.id == task_id).values(**values))


async def reaches(
    services: Services, task_id: str, statuses: Collection[str], within: float = 10
) -> Task:
    """Poll the stored task until its status is one of `statuses`."""
    async with asyncio.timeout(within):
        while True:
            task = await stored(services, task_id)
            if task.status in statuses:
                return task
            await asyncio.sleep(0.01)


def long_ago(seconds: float) -> datetime:
    """A moment `seconds` before now, as the store keeps times."""
    return utcnow() - timedelta(seconds=seconds)
