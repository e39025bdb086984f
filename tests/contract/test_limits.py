"""The limit counters' contract, on every backend: in-process, Redis and Redis Cluster. Requests per
minute slide with the window, slots in flight free up (and lost ones are found), tokens per day
reset at midnight."""

from __future__ import annotations

import pytest

from aitasks.auth.caller import KeyInfo
from aitasks.errors import RateLimited
from aitasks.limits.base import Counters, Limits


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
    limits = Limits(counters)
    key = KeyInfo(id="k2", name="k", tenant="t", webhook_secret="", max_inflight=2)
    still_running: set[str] = {"a", "b"}

    async def unfinished(ids: list[str]) -> list[str]:
        return [i for i in ids if i in still_running]

    await limits.admit(key, "a", unfinished)
    await limits.admit(key, "b", unfinished)
    with pytest.raises(RateLimited) as refused:
        await limits.admit(key, "c", unfinished)
    assert refused.value.details["limit"] == "max_inflight"
    await limits.release(key.id, ["a"])
    await limits.admit(key, "c", unfinished)
    # "b" ended without its release being counted (a worker died between the two).
    still_running = {"c"}
    await limits.admit(key, "d", unfinished)


async def test_tokens_per_day_reset_at_midnight(counters: Counters) -> None:
    clock = Clock(1_800_000_000.0 - 1_800_000_000.0 % 86_400 + 86_000)  # 400 s before midnight
    limits = Limits(counters, clock=clock)
    key = KeyInfo(id="k3", name="k", tenant="t", webhook_secret="", daily_tokens=100)
    await limits.check_tokens(key)
    await limits.add_tokens(key.id, 100)
    with pytest.raises(RateLimited) as refused:
        await limits.check_tokens(key)
    assert refused.value.details["limit"] == "daily_tokens"
    assert refused.value.retry_after == 400
    clock.now += 400
    await limits.check_tokens(key)
