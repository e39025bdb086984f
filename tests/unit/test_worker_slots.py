"""The worker loop's slots: it never asks the queue for fewer than one task, even when a queue
handed it more than it asked for."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aitasks.queue.base import Delivery
from aitasks.store.models import TaskStatus
from aitasks.worker import Worker
from tests.support.in_process import in_process_services, reaches, submit


async def test_a_queue_that_hands_out_too_much_does_not_stop_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with in_process_services(tmp_path, mock_latency_ms=200) as services:
        tasks = [await submit(services, f"task {n}") for n in range(6)]
        asked: list[int] = []
        receive = services.queue.receive

        async def too_generous(queues: Any, consumer: str, **kwargs: Any) -> list[Delivery]:
            # As a Redis read across several streams did: twice the count it was given.
            asked.append(kwargs["count"])
            return await receive(queues, consumer, **{**kwargs, "count": kwargs["count"] * 2})

        monkeypatch.setattr(services.queue, "receive", too_generous)
        worker = Worker(services, concurrency=2)
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run(stop))
        try:
            for task in tasks:
                await reaches(services, task.id, {TaskStatus.SUCCESS})
        finally:
            stop.set()
            await asyncio.wait_for(loop, 10)
        assert asked and min(asked) >= 1
