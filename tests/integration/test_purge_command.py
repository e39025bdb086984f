"""`aitasks purge --dry-run` says what would go and removes nothing; `aitasks purge` removes it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from aitasks.store.models import Task, utcnow
from aitasks.worker import Worker
from tests.support.in_process import in_process_services, submit
from tests.support.processes import run_cli, service_env


async def test_a_dry_run_then_a_purge(tmp_path: Path) -> None:
    async with in_process_services(tmp_path) as services:
        worker = Worker(services)
        for n in range(3):
            await submit(services, f"task {n}")
            [delivery] = await services.queue.receive(
                worker.queues, worker.worker_id, count=1, wait_seconds=1
            )
            await worker.process(delivery)
        async with services.db.session() as session, session.begin():
            oldest = select(Task.id).order_by(Task.created_at).limit(2).scalar_subquery()
            await session.execute(
                update(Task)
                .where(Task.id.in_(oldest))
                .values(finished_at=utcnow() - timedelta(days=45))
            )

    env = service_env(AITASKS_DATA_DIR=str(tmp_path), AITASKS_TASK_RETENTION_DAYS="30")
    dry = await asyncio.to_thread(run_cli, ["purge", "--dry-run"], env, tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == (
        "would remove 0 files, 2 tasks, 0 webhook deliveries, 0 conversations"
    )
    done = await asyncio.to_thread(run_cli, ["purge"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("removed 0 files, 2 tasks, 0 webhook deliveries")

    async with in_process_services(tmp_path) as services, services.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Task)) == 1
