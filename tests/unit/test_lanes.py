"""Lanes through the lifecycle and the worker, on the in-process backends: which lane a submit
lands in, and that turn order holds whatever the turns' lanes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitasks.auth.caller import Caller, KeyInfo
from aitasks.lifecycle import submit_task
from aitasks.priority import Lane
from aitasks.routing import ModelKind
from aitasks.services import Services
from aitasks.store.models import TERMINAL_STATUSES, Task, TaskStatus, as_utc
from aitasks.worker import Worker
from tests.support.in_process import in_process_services, reaches, replies, stored


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with in_process_services(tmp_path, mock_latency_ms=20) as opened:
        yield opened


def keyed(tenant: str, **limits: object) -> Caller:
    return Caller(tenant, KeyInfo(id=f"k-{tenant}", name=tenant, tenant=tenant,
                                  webhook_secret="whsec_x", **limits))  # type: ignore[arg-type]  # fmt: skip


async def chat(
    services: Services, caller: Caller, prompt: str, conversation: str | None = None, **how: object
) -> Task:
    task, _ = await submit_task(
        services, caller, ModelKind.CHAT, model="mock-chat", prompt=prompt,
        conversation_id=conversation, **how,  # type: ignore[arg-type]
    )  # fmt: skip
    return task


async def test_a_submit_lands_in_the_lane_asked_for_or_its_default(services: Services) -> None:
    caller = Caller()
    assert (await chat(services, caller, "a")).priority == Lane.DEFAULT
    assert (await chat(services, caller, "b", interactive=True)).priority == Lane.INTERACTIVE
    asked = await chat(services, caller, "c", priority=Lane.BATCH, interactive=True)
    assert asked.priority == Lane.BATCH


async def test_a_key_caps_the_lane_and_carries_its_weight(services: Services) -> None:
    caller = keyed("acme", max_priority="default", weight=3)
    task = await chat(services, caller, "hurry", priority=Lane.INTERACTIVE)
    assert (task.priority, task.weight, task.tenant) == (Lane.DEFAULT, 3, "acme")
    assert (await chat(services, caller, "bulk", priority=Lane.BATCH)).priority == Lane.BATCH


async def test_a_later_turn_in_a_higher_lane_never_runs_before_an_earlier_one(
    services: Services,
) -> None:
    caller = Caller()
    # Another tenant's backlog in the batch lane, then a conversation whose first turn is
    # batch work and whose second is interactive: the queue hands out the second turn first.
    backlog = [await chat(services, keyed("bulk"), f"bulk {n}", priority=Lane.BATCH)
               for n in range(4)]  # fmt: skip
    first = await chat(services, caller, "first", priority=Lane.BATCH)
    second = await chat(
        services, caller, "second", first.conversation_id, priority=Lane.INTERACTIVE
    )
    worker = Worker(services, concurrency=1)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    try:
        ended = [await reaches(services, t.id, TERMINAL_STATUSES) for t in [*backlog, first]]
        done = await reaches(services, second.id, TERMINAL_STATUSES)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
    before = await stored(services, first.id)
    assert done.status == TaskStatus.SUCCESS and done.attempts == 1
    started, finished = as_utc(done.started_at), as_utc(before.finished_at)
    assert started is not None and finished is not None and started >= finished
    assert [m.turn for m in await replies(services, first.conversation_id)] == [1, 2]
    # Released by the first turn's end, the second went back to its own (interactive) lane,
    # ahead of the batch backlog still waiting.
    still_waiting = [t for t in ended[:4] if (as_utc(t.started_at) or started) > started]
    assert still_waiting, "the second turn ran after the whole batch backlog"


async def test_a_keys_default_deadline_applies_when_a_submit_names_none(
    services: Services,
) -> None:
    caller = keyed("hurried", expires_after=60)
    task = await chat(services, caller, "soon")
    assert task.expires_at is not None and task.created_at is not None
    assert 59 <= (task.expires_at - task.created_at).total_seconds() <= 61
    own = await chat(services, caller, "later", expires_after=600)
    assert own.expires_at is not None and own.created_at is not None
    assert (own.expires_at - own.created_at).total_seconds() > 590
    assert (await chat(services, Caller(), "whenever")).expires_at is None


async def test_batch_work_leaves_a_workers_headroom_to_the_other_lanes(
    services: Services,
) -> None:
    bulk = [await chat(services, keyed("bulk"), f"slow {n} [latency:1500]", priority=Lane.BATCH)
            for n in range(10)]  # fmt: skip
    worker = Worker(services, concurrency=4)  # a quarter kept: batch work fills 3 slots
    assert worker.headroom == 1
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.4)
        running = [await stored(services, t.id) for t in bulk]
        assert sum(t.status == TaskStatus.RUNNING for t in running) == 3
        urgent = await chat(services, Caller(), "now", interactive=True)
        done = await reaches(services, urgent.id, TERMINAL_STATUSES)
        started, submitted = as_utc(done.started_at), as_utc(done.created_at)
        assert started is not None and submitted is not None
        assert (started - submitted).total_seconds() < 0.3  # no wait for a batch slot
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
