"""The worker's defaults and its housekeeping: its slots come from the setting when none are
given, and what it made to run its first deliveries is frozen out of the collector's sight once
(after a full collection), so later full collections do not walk it again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aitasks import warm_freeze
from aitasks.store.models import TaskStatus
from aitasks.warm_freeze import FreezingApp, WarmFreeze
from aitasks.worker import Worker
from tests.support.in_process import in_process_services, stored, submit


async def test_the_slots_come_from_the_setting_unless_given(tmp_path: Path) -> None:
    async with in_process_services(tmp_path, worker_concurrency=5) as services:
        assert Worker(services).concurrency == 5
        assert Worker(services, concurrency=3).concurrency == 3


class CollectorSpy:
    """Stands in for the `gc` module in `warm_freeze`: records what it is asked to do."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def collect(self, *_: Any) -> int:
        self.calls.append("collect")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")


async def test_what_the_first_deliveries_made_is_frozen_once_after_a_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = CollectorSpy()
    monkeypatch.setattr(warm_freeze, "gc", spy)
    async with in_process_services(tmp_path) as services:
        tasks = [await submit(services, f"turn {i}") for i in range(3)]
        worker = Worker(services)
        worker.freezes = WarmFreeze(after=(2,))
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run(stop))
        try:
            async with asyncio.timeout(10):
                while True:
                    if worker.freezes.done >= 3:  # every delivery handled, acknowledged or not
                        break
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.wait_for(loop, 10)
        for task in tasks:
            assert (await stored(services, task.id)).status == TaskStatus.SUCCESS
    assert spy.calls == ["collect", "freeze"]


async def test_a_gateway_freezes_once_after_its_first_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = CollectorSpy()
    monkeypatch.setattr(warm_freeze, "gc", spy)
    served: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        served.append(scope["type"])

    freezing = FreezingApp(app, WarmFreeze(after=(2,)))
    await freezing({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    for _ in range(3):
        await freezing({"type": "http"}, None, None)  # type: ignore[arg-type]
    assert served == ["lifespan", "http", "http", "http"]
    assert spy.calls == ["collect", "freeze"]
