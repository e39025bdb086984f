"""The limit counters' contract, on every backend: in-process, Redis and Redis Cluster. Requests per
minute slide with the window, slots in flight free up (and lost ones are found), tokens per day
reset at midnight."""

from __future__ import annotations

import asyncio

import pytest

from aitasks.auth.caller import KeyInfo
from aitasks.errors import RateLimited
from aitasks.limits.base import RESERVATION_LEASE_SECONDS, Counters, Limits


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_requests_per_minute_slide_with_the_window(counters: Counters) -> None:
    clock = Clock(1_800_000_000.0)  # the start of a minute
    limits = Limits(counters, clock=clock)
    key = KeyInfo(id="k1", name="k", tenant="t", webhook_secret="", rpm=5)
    for _ in range(5):
        await limits.take_request(key)
    with pytest.raises(RateLimited) as refused:
        await limits.take_request(key)
    assert refused.value.details["limit"] == "rpm"
    assert "5 requests per minute" in refused.value.message
    assert refused.value.retry_after == 60
    # Half a minute into the next one, half of the last minute's five still count.
    clock.now += 90
    for _ in range(3):
        await limits.take_request(key)
    with pytest.raises(RateLimited):
        await limits.take_request(key)
    # Two minutes on, the window is empty again.
    clock.now += 120
    for _ in range(5):
        await limits.take_request(key)


async def test_in_flight_slots_free_up_and_lost_ones_are_found(counters: Counters) -> None:
    clock = Clock(1_800_000_000.0)
    limits = Limits(counters, clock=clock)
    key = KeyInfo(id="k2", name="k", tenant="t", webhook_secret="", max_inflight=2)
    still_running: set[str] = {"a", "b"}

    async def unfinished(ids: list[str]) -> list[str]:
        return [i for i in ids if i in still_running]

    for task_id in ("a", "b"):
        await limits.admit(key, task_id, unfinished)
        await limits.confirm(key, task_id, task_id)
    with pytest.raises(RateLimited) as refused:
        await limits.admit(key, "c", unfinished)
    assert refused.value.details["limit"] == "max_inflight"
    await limits.release(key.id, ["a"])
    await limits.admit(key, "c", unfinished)
    await limits.confirm(key, "c", "c")
    # "b" ended without its release being counted (a worker died between the two).
    still_running = {"c"}
    await limits.admit(key, "d", unfinished)


async def test_a_reservation_is_kept_while_its_request_is_in_flight(counters: Counters) -> None:
    """A reserved slot whose task is not stored yet is not dropped by another submit's clean-up
    until its lease lapses; a stored (confirmed) one is checked against the database at once."""
    clock = Clock(1_800_000_000.0)
    limits = Limits(counters, clock=clock)
    key = KeyInfo(id="k4", name="k", tenant="t", webhook_secret="", max_inflight=2)
    stored: set[str] = set()

    async def unfinished(ids: list[str]) -> list[str]:
        return [i for i in ids if i in stored]

    await limits.admit(key, "a", unfinished)
    await limits.admit(key, "b", unfinished)
    for _ in range(3):
        with pytest.raises(RateLimited):
            await limits.admit(key, "c", unfinished)
    # "a" is stored, and has finished without its release counted: found free at once.
    await limits.confirm(key, "a", "a")
    await limits.admit(key, "c", unfinished)
    # "b"'s request died before it stored its task: its slot is free once its lease lapses.
    clock.now += RESERVATION_LEASE_SECONDS - 1
    with pytest.raises(RateLimited):
        await limits.admit(key, "d", unfinished)
    clock.now += 2
    stored.add("c")  # (lapsed too, but stored and running: kept)
    await limits.admit(key, "d", unfinished)
    with pytest.raises(RateLimited):
        await limits.admit(key, "e", unfinished)


async def test_a_clean_up_drops_only_what_it_read(counters: Counters) -> None:
    """A slot taken again between a clean-up's read and its drop stays counted."""
    limits = Limits(counters)
    key = KeyInfo(id="k5", name="k", tenant="t", webhook_secret="", max_inflight=1)
    await limits.admit(key, "ticket", lambda ids: _none(ids))
    await limits.confirm(key, "ticket", "task")
    seen = await counters.inflight(key.id)
    assert list(seen) == ["task"]
    # A retry of "task" confirmed meanwhile (a new score), then the stale drop arrives.
    await limits.confirm(key, "retry-1", "task")
    await counters.forget(key.id, seen)
    assert list(await counters.inflight(key.id)) == ["task"]
    await counters.forget(key.id, await counters.inflight(key.id))
    assert await counters.inflight(key.id) == {}


async def _none(ids: list[str]) -> list[str]:
    return []


async def test_tokens_per_day_reset_at_midnight(counters: Counters) -> None:
    clock = Clock(1_800_000_000.0 - 1_800_000_000.0 % 86_400 + 86_000)  # 400 s before midnight
    limits = Limits(counters, clock=clock)
    key = KeyInfo(id="k3", name="k", tenant="t", webhook_secret="", daily_tokens=100)
    await limits.admit(key, "t1", _none)
    await limits.add_tokens(key.id, 100)
    with pytest.raises(RateLimited) as refused:
        await limits.admit(key, "t2", _none)
    assert refused.value.details["limit"] == "daily_tokens"
    assert refused.value.retry_after == 400
    clock.now += 400
    await limits.admit(key, "t3", _none)


async def test_reserved_tokens_hold_the_quota_and_settle_to_the_real_usage(
    counters: Counters,
) -> None:
    clock = Clock(1_800_000_000.0 - 1_800_000_000.0 % 86_400 + 86_000)  # 400 s before midnight
    limits = Limits(counters, clock=clock)
    key = KeyInfo(id="k6", name="k", tenant="t", webhook_secret="", daily_tokens=250)
    # Parallel admissions see each other's reservations: three of 100 reach past 250.
    outcomes = await asyncio.gather(
        *(limits.admit(key, f"t{n}", _none, tokens=100) for n in range(10)),
        return_exceptions=True,
    )
    admitted = [f"t{n}" for n, outcome in enumerate(outcomes) if outcome is None]
    assert len(admitted) == 3
    assert await limits.tokens_used(key.id) == 300
    # One used 40 (the estimate goes back, the usage counts); one never ran (all back).
    await limits.settle(key.id, admitted[0], 40)
    await limits.release(key.id, [admitted[1]])
    assert await limits.tokens_used(key.id) == 140
    # The third settles tomorrow: its reservation goes back to today's count, its usage
    # tomorrow's.
    clock.now += 400
    await limits.settle(key.id, admitted[2], 70)
    assert await limits.tokens_used(key.id) == 70
    clock.now -= 400
    assert await limits.tokens_used(key.id) == 40
    # A ticket confirmed as a task settles as that task; one stopped while running keeps its
    # estimate counted.
    await limits.admit(key, "retry-x", _none, tokens=50)
    await limits.confirm(key, "retry-x", "x")
    await limits.release(key.id, ["x"], refund=False)
    await limits.settle(key.id, "x", 0)
    assert await limits.tokens_used(key.id) == 90
