"""The reconciler on the in-process backends: what the database says is unfinished and no queue
holds is published again; what is young, queued, or waiting on its turn is left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitasks.services import Services
from aitasks.store.models import TaskStatus
from aitasks.worker.reconciler import Reconciler
from tests.support.in_process import in_process_services, long_ago, set_task, stored, submit


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with in_process_services(tmp_path, reconcile_seconds=30) as opened:
        yield opened


async def test_a_pending_task_the_queue_lost_is_published_again(services: Services) -> None:
    task = await submit(services, "lost between commit and publish", publish=False)
    await set_task(services, task.id, created_at=long_ago(60), updated_at=long_ago(60))

    assert await Reconciler(services).reconcile_once() == 1
    assert await services.queue.queued_task_ids("mock") == {task.id}
    assert (await stored(services, task.id)).status == TaskStatus.PENDING


async def test_a_young_pending_task_is_left_to_its_gateway(services: Services) -> None:
    await submit(services, "being published right now", publish=False)

    assert await Reconciler(services).reconcile_once() == 0
    assert await services.queue.depth("mock") == 0


async def test_a_task_the_queue_holds_is_not_published_twice(services: Services) -> None:
    task = await submit(services, "queued and waiting")
    await set_task(services, task.id, updated_at=long_ago(60))

    assert await Reconciler(services).reconcile_once() == 0
    assert await services.queue.depth("mock") == 1


async def test_a_running_task_whose_lease_ran_out_is_published_again(services: Services) -> None:
    task = await submit(services, "its worker died", publish=False)
    await set_task(
        services, task.id, status=TaskStatus.RUNNING, worker_id="gone", lease_until=long_ago(1)
    )

    assert await Reconciler(services).reconcile_once() == 1
    assert await services.queue.queued_task_ids("mock") == {task.id}


async def test_a_running_task_under_a_live_lease_is_left_alone(services: Services) -> None:
    task = await submit(services, "its worker is alive", publish=False)
    await set_task(
        services, task.id, status=TaskStatus.RUNNING, worker_id="alive", lease_until=long_ago(-60)
    )

    assert await Reconciler(services).reconcile_once() == 0
    assert await services.queue.depth("mock") == 0


async def test_a_later_turn_waiting_on_an_unfinished_one_is_left_alone(
    services: Services,
) -> None:
    first = await submit(services, "first", publish=False)
    second = await submit(services, "second", conversation_id=first.conversation_id, publish=False)
    for task in (first, second):
        await set_task(services, task.id, updated_at=long_ago(60))

    assert await Reconciler(services).reconcile_once() == 1
    assert await services.queue.queued_task_ids("mock") == {first.id}
    assert second.id not in await services.queue.queued_task_ids("mock")
