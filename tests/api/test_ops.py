"""What the operations page reads, in-process (the embedded app: SQLite, the series in the
database): samples of real traffic (finished and failed tasks per queue, depth, wait and run
percentiles), a task's timeline with its attempts, and the page itself; its reads need a key
while auth is on. (The page in Chromium: tests/browser/test_ops_page.py.)"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from aitasks.ops.sampler import Sampler, percentile
from aitasks.store.models import Task, utcnow
from tests.support.embedded import (
    EmbeddedFactory,
    finished,
    make_settings,
    reaches,
    running,
    running_app,
)

FAST_SAMPLES = {"ops_sample_seconds": 0.2}


async def submit(client: httpx.AsyncClient, prompt: str) -> str:
    answer = await client.post(
        "/v1/chat/completions",
        json={"prompt": prompt, "model": "mock-chat", "conversation_id": None},
    )
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


async def totals(client: httpx.AsyncClient, queue: str) -> dict[str, Any]:
    """Finished and failed over every sample so far, and the latest sample of `queue`."""
    series = (await client.get("/v1/ops/series")).json()
    of_queue = [s["queues"][queue] for s in series["samples"] if queue in s["queues"]]
    return {
        "finished": sum(q["finished"] for q in of_queue),
        "failed": sum(q["failed"] for q in of_queue),
        "latest": of_queue[-1] if of_queue else None,
        "samples": series["samples"],
    }


async def test_the_series_counts_real_traffic(embedded: EmbeddedFactory) -> None:
    async with embedded(**FAST_SAMPLES) as client:
        ids = [await submit(client, f"hello {n}") for n in range(3)]
        ids.append(await submit(client, "this one fails [fail:fatal]"))
        for task_id in ids:
            await finished(client, task_id)
        async with asyncio.timeout(10):
            while True:
                counted = await totals(client, "mock")
                if counted["finished"] >= 4:
                    break
                await asyncio.sleep(0.1)
        assert counted["finished"] == 4 and counted["failed"] == 1
        sample = next(s for s in counted["samples"] if s["queues"]["mock"]["finished"])
        mock = sample["queues"]["mock"]
        assert mock["wait_p50"] is not None and mock["wait_p95"] >= mock["wait_p50"] >= 0
        assert mock["run_p95"] >= mock["run_p50"] >= 0
        assert mock["depth"] == 0 and mock["oldest_waiting"] == 0
        assert sample["seconds"] > 0
        # Every queue of the table is there, busy or not; and every priority lane.
        assert {"mock", "gemini", "sd"} <= set(sample["queues"])
        assert set(sample["lanes"]) == {"interactive", "default", "batch"}
        # A reader that has the samples up to some moment asks only for the newer ones.
        newer = (await client.get("/v1/ops/series", params={"since": sample["at"]})).json()
        assert all(s["at"] > sample["at"] for s in newer["samples"])
        assert newer["sample_seconds"] == 0.2 and newer["series_seconds"] == 3600


async def test_a_finish_committed_after_its_moments_sample_is_counted_by_a_later_one(
    tmp_path: Any,
) -> None:
    """A finish is stamped before its transaction commits (a worker's flush waits its turn): a
    sample taken in between cannot see it, and the next must not start after its stamp."""
    # The app's own sampler samples once at start, then not for an hour.
    async with running_app(make_settings(tmp_path, ops_sample_seconds=3600)) as (app, client):
        sampler = Sampler(app.state.services, app.state.ops_series)
        moment = utcnow() + timedelta(seconds=1)
        before = await sampler.sample_once(moment)
        task_id = await submit(client, "stamped, then committed late")
        await finished(client, task_id)
        # As if stamped half a second before that sample and committed after it.
        async with app.state.services.db.session() as session, session.begin():
            stamp = moment - timedelta(seconds=0.5)
            await session.execute(update(Task).where(Task.id == task_id).values(finished_at=stamp))
        later = [
            await sampler.sample_once(moment + timedelta(seconds=seconds)) for seconds in (5, 10)
        ]
        counted = [s.data["queues"]["mock"]["finished"] for s in (before, *later)]
        assert counted == [0, 1, 0]


async def test_a_timeline_shows_each_attempt(embedded: EmbeddedFactory) -> None:
    async with embedded() as client:
        task_id = await submit(client, "twice [fail-first:1]")
        task = await finished(client, task_id)
        assert task["status"] == "SUCCESS" and task["attempts"] == 2
        timeline = (await client.get(f"/v1/ops/tasks/{task_id}")).json()
        steps = [s["what"] for s in timeline["steps"]]
        assert steps == [
            "submitted",
            "queued",
            "attempt 1",
            "attempt 2",
            "first token",
            "succeeded",
        ]
        assert all(s["at"] is not None for s in timeline["steps"])
        times = [s["at"] for s in timeline["steps"]]
        assert times == sorted(times)
        assert timeline["attempts"] == 2 and timeline["status"] == "SUCCESS"
        assert timeline["trace_id"] is None  # tracing is off here
        assert (await client.get("/v1/ops/tasks/nope")).status_code == 404


async def test_a_failed_tasks_timeline_ends_with_its_reason(embedded: EmbeddedFactory) -> None:
    async with embedded() as client:
        task_id = await submit(client, "no [fail:fatal]")
        await finished(client, task_id)
        timeline = (await client.get(f"/v1/ops/tasks/{task_id}")).json()
        assert timeline["steps"][-1]["what"] == "failed"
        assert timeline["steps"][-1]["detail"]


async def test_the_page_is_served_and_its_reads_need_a_key(tmp_path: Any) -> None:
    async with running(make_settings(tmp_path, auth=True)) as client:
        page = await client.get("/ops")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "/static/ops.js" in page.text
        for path in ("/v1/ops/series", "/v1/ops/tasks/abc", "/v1/status"):
            assert (await client.get(path)).status_code == 401, path


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (50.0, 95.0)


async def test_each_worker_says_what_it_runs(
    embedded: EmbeddedFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aitasks.worker.runner.HEARTBEAT_SECONDS", 0.1)
    async with embedded() as client:
        task_id = await submit(client, "slowly [latency:3000]")
        async with asyncio.timeout(10):
            while True:
                # Until its first heartbeat lands, the worker is not listed at all.
                workers = (await client.get("/v1/status")).json()["workers"]
                if workers and workers[0]["running"]:
                    break
                await asyncio.sleep(0.05)
        (worker,) = workers
        assert worker["running"] == [{"task_id": task_id, "model": "mock-chat", "attempt": 1}]
        await client.post(f"/v1/tasks/{task_id}/cancel")


async def test_the_series_shows_what_waits_in_each_lane(embedded: EmbeddedFactory) -> None:
    async with embedded(worker_concurrency=1, **FAST_SAMPLES) as client:
        slow = await submit(client, "first, slowly [latency:3000]")
        await reaches(client, slow, {"RUNNING"})
        running_since = time.time()
        waiting = await submit(client, "second, waiting")  # the one slot is taken
        async with asyncio.timeout(10):
            while True:
                samples = (await client.get("/v1/ops/series")).json()["samples"]
                lanes = samples[-1]["lanes"] if samples else {}
                if (
                    samples
                    and samples[-1]["at"] > running_since
                    and any(lane["depth"] for lane in lanes.values())
                ):
                    break
                await asyncio.sleep(0.1)
        (busy,) = [lane for lane in lanes.values() if lane["depth"]]
        assert busy["depth"] == 1 and busy["oldest_waiting"] >= 0
        for task_id in (slow, waiting):
            await client.post(f"/v1/tasks/{task_id}/cancel")
