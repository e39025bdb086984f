"""The worker's per-task event writer: order kept, round trips shared."""

from __future__ import annotations

import asyncio
from typing import Any

from aitasks.events.base import DELTA, DONE, STATUS
from aitasks.events.memory import InProcessEventLog
from aitasks.worker.event_writer import TaskEventWriter


class CountingLog(InProcessEventLog):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[str], bool]] = []

    async def append_many(
        self, task_id: str, events: list[tuple[str, dict[str, Any]]], *, first: bool = True
    ) -> None:
        self.calls.append(([event_type for event_type, _ in events], first))
        await super().append_many(task_id, events, first=first)


async def test_what_one_moment_emits_goes_in_one_write_and_deltas_merge() -> None:
    log = CountingLog()
    writer = TaskEventWriter(log, "t1")
    writer.emit(STATUS, {"status": "RUNNING"})
    await asyncio.sleep(0)  # the provider's task runs, as in the worker, before the write starts
    writer.emit(DELTA, {"delta": "hel"})
    writer.emit(DELTA, {"delta": "lo"})
    await writer.flush()
    writer.emit(STATUS, {"status": "SUCCESS"})
    writer.emit(DONE, {})
    await writer.flush()
    assert log.calls == [([STATUS, DELTA], True), ([STATUS, DONE], False)]
    read = await log.read("t1", after=None, wait_seconds=0)
    assert [(e.type, e.data) for e in read][:2] == [
        (STATUS, {"status": "RUNNING"}),
        (DELTA, {"delta": "hello"}),
    ]
