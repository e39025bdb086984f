"""The worker's per-task event writer: order kept, round trips shared."""

from __future__ import annotations

import asyncio
from typing import Any

from aitasks.events.base import DELTA, DONE, STATUS, Fence
from aitasks.events.memory import InProcessEventLog
from aitasks.worker.event_writer import TaskEventWriter


class CountingLog(InProcessEventLog):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[str], bool]] = []

    async def append_many(
        self,
        task_id: str,
        events: list[tuple[str, dict[str, Any]]],
        *,
        first: bool = True,
        fence: Fence | None = None,
    ) -> list[str]:
        self.calls.append(([event_type for event_type, _ in events], first))
        return await super().append_many(task_id, events, first=first, fence=fence)


async def test_what_one_moment_emits_goes_in_one_write_and_deltas_merge() -> None:
    log = CountingLog()
    writer = TaskEventWriter(log, "t1", lambda: Fence(1, 1))
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


async def test_a_writer_whose_claim_was_taken_over_writes_nothing_more() -> None:
    log = InProcessEventLog()
    stale = TaskEventWriter(log, "t1", lambda: Fence(1, 1))
    stale.emit(STATUS, {"status": "RUNNING", "attempt": 1})
    stale.emit(DELTA, {"delta": "old "})
    await stale.flush()
    newer = TaskEventWriter(log, "t1", lambda: Fence(1, 2))
    newer.emit(STATUS, {"status": "RUNNING", "attempt": 2})
    await newer.flush()
    stale.emit(DELTA, {"delta": "zombie "})  # the frozen worker wakes up and goes on
    await stale.flush()
    newer.emit(DELTA, {"delta": "new"})
    await newer.flush()
    assert stale.fenced_off and not newer.fenced_off
    stale.emit(DELTA, {"delta": "dropped at once"})
    await stale.flush()
    read = await log.read("t1", after=None, wait_seconds=0)
    assert [e.data for e in read] == [
        {"status": "RUNNING", "attempt": 1},
        {"delta": "old "},
        {"status": "RUNNING", "attempt": 2},
        {"delta": "new"},
    ]


async def test_a_later_piece_is_written_without_waiting_a_turn() -> None:
    log = CountingLog()
    writer = TaskEventWriter(log, "t1", lambda: Fence(1, 1))
    writer.emit(STATUS, {"status": "RUNNING"})
    await writer.flush()
    writer.emit(DELTA, {"delta": "first "})
    writer.emit(DELTA, {"delta": "piece"})  # the same step: it rides along
    await asyncio.sleep(0)  # the writer's task takes one step: the write is on its way
    assert log.calls == [([STATUS], True), ([DELTA], False)]
    await writer.flush()
    read = await log.read("t1", after=None, wait_seconds=0)
    assert read[-1].data == {"delta": "first piece"}
