"""Group commit in the worker (worker/flushes.py; the mechanism's own tests are test_grouping.py): a
worker running tasks side by side claims and finishes them in fewer statements than tasks, with
every outcome as it would be alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from aitasks.store import claims, finishes
from aitasks.store.models import TaskStatus
from aitasks.worker import Worker
from tests.support.in_process import in_process_services, reaches, replies, stored, submit


@pytest.mark.parametrize("concurrency", [8])
async def test_a_worker_claims_and_finishes_tasks_side_by_side_in_fewer_statements(
    tmp_path: Path, concurrency: int
) -> None:
    async with in_process_services(tmp_path) as services:
        tasks = [await submit(services, f"hello {n}") for n in range(concurrency)]
        seen: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            seen.append(" ".join(statement.split())[:40])

        event.listen(services.db.engine.sync_engine, "before_cursor_execute", count)
        worker = Worker(services, concurrency=concurrency)
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run(stop))
        try:
            for task in tasks:
                done = await reaches(services, task.id, {TaskStatus.SUCCESS, TaskStatus.FAILED})
                assert done.status == TaskStatus.SUCCESS and done.attempts == 1
                [reply] = await replies(services, task.conversation_id)
                assert reply.content == done.result["text"] if done.result else False
        finally:
            stop.set()
            await asyncio.wait_for(loop, 10)
            event.remove(services.db.engine.sync_engine, "before_cursor_execute", count)
        claimed = [s for s in seen if s.startswith("UPDATE tasks SET status")]
        finished = [s for s in seen if s.startswith("INSERT INTO messages")]
        assert 1 <= len(claimed) < concurrency
        assert 1 <= len(finished) < concurrency
        assert await services.queue.depth("mock") == 0  # every delivery acknowledged


async def test_one_outcome_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    """A flush that fails other than by an outage is written again one outcome at a time, so
    only the outcome at fault gets the error and the others stand."""
    async with in_process_services(tmp_path) as services:
        good, bad = [await submit(services, f"hello {n}", publish=False) for n in range(2)]
        worker = Worker(services)
        got = await claims.claim_deliveries(
            services.db, [good.id, bad.id], worker_id=worker.worker_id, lease_seconds=30
        )
        held = [c.task for c in got if c.task is not None]
        outcomes = [
            finishes.success(held[0], text="fine"),
            finishes.success(held[1], text="odd", data={"not json": object()}),
        ]
        written = await asyncio.gather(
            *(worker.outcomes._finishes.hand_in(o) for o in outcomes), return_exceptions=True
        )
        assert isinstance(written[0], finishes.Finished)
        assert isinstance(written[1], Exception)
        assert (await stored(services, good.id)).status == TaskStatus.SUCCESS
        assert (await stored(services, bad.id)).status == TaskStatus.RUNNING
