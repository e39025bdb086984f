"""Workers on Redis Streams as deployed (a SQLite store beside it): a worker reading several busy
queues never takes more tasks than it has slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from aitasks.config import Settings
from aitasks.services import Services
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from aitasks.store.models import TaskStatus
from aitasks.worker import Worker
from tests.support.in_process import reaches, submit
from tests.support.services import REDIS_URL

TWO_QUEUES = """
[models."mock-left"]
kind = "chat"
provider = "mock"
queue = "left"

[models."mock-right"]
kind = "chat"
provider = "mock"
queue = "right"
"""

ServicesFactory = Callable[[str], AbstractAsyncContextManager[Services]]


@pytest.fixture
def redis_services(tmp_path: Path, redis_prefix: str) -> ServicesFactory:
    """`async with redis_services(models_toml)`: services on Redis (this test's prefix) and one
    SQLite store under `tmp_path`, with the model table `models_toml` adds; each call opens
    another set, as another worker process would."""

    @asynccontextmanager
    async def opened(models: str) -> AsyncIterator[Services]:
        table = tmp_path / "models.toml"
        table.write_text(models)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=tmp_path,
            redis_url=REDIS_URL,
            redis_prefix=redis_prefix,
            models_file=table,
            mock_latency_ms=20,
            retry_base_seconds=0.01,
        )
        db = Database(settings.sqlalchemy_url)
        await upgrade(db)
        await db.dispose()
        services = Services.open(settings)
        try:
            yield services
        finally:
            await services.close()

    return opened


@asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[list[asyncio.Task[None]]]:
    """The workers' loops in the background (a loop that ends early has died), stopped after."""
    stop = asyncio.Event()
    loops = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        yield loops
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops, return_exceptions=True), 15)


async def test_a_worker_on_two_busy_queues_takes_no_more_than_its_slots(
    redis_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with redis_services(TWO_QUEUES) as services:
        tasks = [
            await submit(services, f"task {n}", model=model)
            for n in range(10)
            for model in ("mock-left", "mock-right")
        ]
        worker = Worker(services, queues=["left", "right"], concurrency=4)
        most = 0
        receive = services.queue.receive

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal most
            got = await receive(*args, **kwargs)
            most = max(most, len(worker._in_flight) + len(got))
            return got

        monkeypatch.setattr(services.queue, "receive", counted)
        async with running(worker) as (loop,):
            for task in tasks:
                done = await reaches(services, task.id, {TaskStatus.SUCCESS}, within=30)
                assert not loop.done(), loop.exception() if loop.done() else None
                assert done.status == TaskStatus.SUCCESS
        assert most <= 4
