"""The same store, queue, event-log and limit-counter contracts on every backend, as SAQ's tests
do: each fixture here is parametrised by the backends tests/support/backends.py names, so every
test that takes it runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitasks.config import async_database_url
from aitasks.events.base import EventLog
from aitasks.limits.base import Counters
from aitasks.queue.base import TaskQueue
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from tests.support.backends import (
    COUNTERS,
    DATABASES,
    EVENT_LOGS,
    QUEUES,
    make_counters,
    make_event_log,
    make_queue,
    redis_at,
)


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store of each kind: for tests of the migrations themselves."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return async_database_url(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=DATABASES)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A store of each kind, its schema made (on PostgreSQL, a copy of the session's migrated
    template: the upgrade here finds it at the head)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        url = async_database_url(request.getfixturevalue("migrated_postgres_url"))
    database = Database(url)
    await upgrade(database)
    yield database
    await database.dispose()


@pytest.fixture(params=QUEUES)
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[TaskQueue]:
    task_queue = make_queue(redis_at(request, request.param))
    await task_queue.warm()  # as a started gateway or worker has (Services.warm)
    yield task_queue
    await task_queue.close()


@pytest.fixture(params=EVENT_LOGS)
async def events(request: pytest.FixtureRequest) -> AsyncIterator[EventLog]:
    log = make_event_log(redis_at(request, request.param))
    await log.warm()
    yield log
    await log.close()


@pytest.fixture(params=COUNTERS)
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    made = make_counters(redis_at(request, request.param))
    await made.warm()
    yield made
    await made.close()
