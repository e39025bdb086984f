"""What tracing and the operations page ask of the seams, on every backend: a queue entry carries
its task's trace context, first time and redelivered; an event log says when each event was
written (a task's timeline); the operations series keeps the last hour of samples and no more, in
Redis (server and cluster) or in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aitasks.config import async_database_url
from aitasks.events.base import STATUS, EventLog
from aitasks.ops.series import SERIES_SECONDS, DatabaseSeries, RedisSeries, Sample, Series
from aitasks.queue.base import TaskQueue
from aitasks.redis_connect import connect
from aitasks.store import ops as store
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from aitasks.store.models import Conversation, Task
from tests.support.backends import REDELIVER_AFTER, redis_at

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_an_entry_carries_its_trace_context_and_keeps_it_when_redelivered(
    queue: TaskQueue,
) -> None:
    await queue.publish("q", "traced", trace=TRACEPARENT)
    await queue.publish("q", "plain")
    first = await queue.receive(["q"], "dies", count=2, wait_seconds=1)
    assert {d.task_id: d.trace for d in first} == {"traced": TRACEPARENT, "plain": None}
    await asyncio.sleep(REDELIVER_AFTER * 1.5)
    again = await queue.receive(["q"], "survivor", count=2, wait_seconds=1)
    assert {d.task_id: d.trace for d in again} == {"traced": TRACEPARENT, "plain": None}


async def test_every_event_says_when_it_was_written(events: EventLog) -> None:
    before = time.time()
    await events.append("t1", STATUS, {"status": "PENDING"})
    await events.append("t1", STATUS, {"status": "RUNNING", "attempt": 1})
    after = time.time()
    read = await events.read("t1", after=None, wait_seconds=0)
    assert len(read) == 2
    for event in read:
        assert event.written_at is not None
        # Redis stamps ids by its own clock, in whole milliseconds.
        assert before - 1 <= event.written_at <= after + 1


SERIES = ("sqlite", "postgresql", "redis", "redis-cluster")
MAX_SAMPLES = 5


@pytest.fixture(params=SERIES)
async def series(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Series]:
    if request.param in ("sqlite", "postgresql"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
        if request.param == "postgresql":
            url = async_database_url(request.getfixturevalue("postgres_url"))
        db = Database(url)
        await upgrade(db)
        yield DatabaseSeries(db)
        await db.dispose()
        return
    redis = redis_at(request, request.param)
    assert redis is not None
    made = RedisSeries(
        connect(redis.url, socket_timeout=5), prefix=redis.prefix, max_samples=MAX_SAMPLES
    )
    yield made
    await made.close()


async def test_the_series_gives_back_samples_oldest_first(series: Series) -> None:
    now = time.time()
    assert await series.last_at() is None
    for ago in (30, 20, 10):
        await series.add(Sample(now - ago, {"queues": {"mock": {"finished": ago}}}))
    got = await series.since(now - 25)
    assert [round(s.at - now) for s in got] == [-20, -10]
    assert got[0].data == {"queues": {"mock": {"finished": 20}}}
    last = await series.last_at()
    assert last is not None and abs(last - (now - 10)) < 0.01


async def test_the_series_keeps_an_hour_and_no_more(series: Series) -> None:
    now = time.time()
    # Older than the hour: the database drops it as newer ones come; Redis keeps a count that
    # covers the hour (here MAX_SAMPLES) and drops what falls past it.
    await series.add(Sample(now - SERIES_SECONDS - 60, {"old": True}))
    for n in range(MAX_SAMPLES):
        await series.add(Sample(now - MAX_SAMPLES + n, {"n": n}))
    kept = await series.since(0)
    assert [s.data for s in kept] == [{"n": n} for n in range(MAX_SAMPLES)]


async def test_wait_and_run_percentiles_are_nearest_rank_on_both_stores(db: Database) -> None:
    """PostgreSQL works them out itself, SQLite here: the same figures either way."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with db.session() as session, session.begin():
        session.add(Conversation(id="c1", tenant="t", turns=20))
        for n in range(1, 21):  # waits of 1..20 s, runs of 10..200 s, on queue "q"
            created = start + timedelta(seconds=n)
            started = created + timedelta(seconds=n)
            session.add(
                Task(
                    id=f"t{n}", tenant="t", conversation_id="c1", turn=n, kind="chat",
                    model="m", queue="q", provider="mock", prompt="p", status="SUCCESS",
                    created_at=created, started_at=started,
                    finished_at=started + timedelta(seconds=10 * n),
                )
            )  # fmt: skip
    async with db.session() as session:
        got = await store.timing_percentiles(session, start, start + timedelta(hours=1))
        none = await store.timing_percentiles(session, start - timedelta(hours=1), start)
    assert got == {"q": {"wait_p50": 10.0, "wait_p95": 19.0, "run_p50": 100.0, "run_p95": 190.0}}
    assert none == {}
