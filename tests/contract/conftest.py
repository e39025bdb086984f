"""The same store and queue contracts, run on every backend (as SAQ's tests do)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitasks.config import async_database_url
from aitasks.queue.base import TaskQueue
from aitasks.queue.memory import InProcessQueue
from aitasks.queue.redis import RedisStreamQueue
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from tests.conftest import REDIS_URL

REDELIVER_AFTER = 0.3


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return async_database_url(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await upgrade(database)
    yield database
    await database.dispose()


@pytest.fixture(params=["in-process", "redis"])
def queue_backend(request: pytest.FixtureRequest) -> str | None:
    """None for the in-process queue; the Redis key prefix for Redis."""
    return None if request.param == "in-process" else request.getfixturevalue("redis_prefix")


@pytest.fixture
async def queue(queue_backend: str | None) -> AsyncIterator[TaskQueue]:
    if queue_backend is None:
        task_queue: TaskQueue = InProcessQueue(redeliver_after=REDELIVER_AFTER)
    else:
        task_queue = RedisStreamQueue.from_url(
            REDIS_URL, prefix=queue_backend, redeliver_after=REDELIVER_AFTER
        )
    yield task_queue
    await task_queue.close()
