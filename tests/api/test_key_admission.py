"""A key's limits hold under attack, on both backends of the counters (memory on the embedded
default, Redis beside PostgreSQL): parallel submits admit exactly the in-flight limit, a refused
retry leaves the running task counted, parallel submits cannot overshoot the daily token quota
without bound, and tokens reserved at admission are settled with the real usage."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aitasks.auth.tokens import key_id_of
from aitasks.limits.tokens import REPLY_ESTIMATE_TOKENS, estimate_tokens
from tests.support.embedded import finished, reaches
from tests.support.keyed_app import MODES, KeyedApp, keyed_app

CHAT = "/v1/chat/completions"
OPENAI_CHAT = "/openai/v1/chat/completions"
ASK = {"prompt": "stay in flight", "model": "mock-chat"}


@pytest.fixture(params=MODES)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyedApp]:
    """The gateway alone (no worker: accepted tasks stay in flight), auth on."""
    async with keyed_app(request.param, tmp_path) as made:
        yield made


def codes(answers: list[httpx.Response]) -> list[int]:
    return sorted(a.status_code for a in answers)


@pytest.mark.parametrize("parallel", [10, 20, 50])
async def test_parallel_submits_admit_exactly_the_in_flight_limit(
    app: KeyedApp, parallel: int
) -> None:
    headers = await app.key("racer", max_inflight=2)
    for round_ in range(3):
        # The first round races for the two slots; later rounds find them taken. Each submit is
        # keyed: its write is then a transaction of several statements, a wide window between
        # the admission and the commit for a refused submit's clean-up to fall into.
        answers = await asyncio.gather(
            *(
                app.http.post(
                    CHAT, json=ASK, headers={**headers, "Idempotency-Key": f"r{round_}-{n}"}
                )
                for n in range(parallel)
            )
        )
        for answer in answers:
            if answer.status_code == 429:
                assert answer.json()["error"]["message"].startswith("in-flight limit reached")
        assert codes(answers).count(202) <= 2
    assert await app.count("SELECT count(*) FROM tasks") == 2


async def test_a_refused_retry_leaves_the_task_in_flight_counted(app: KeyedApp) -> None:
    headers = await app.key("retrier", max_inflight=2)
    first = await app.http.post(CHAT, json=ASK, headers=headers)
    assert first.status_code == 202
    task_ids = [first.json()["task_id"]]
    answers = []
    for _ in range(4):
        # Still in flight: the retry is refused, and must not free its slot.
        retried = await app.http.post(f"/v1/tasks/{task_ids[-1]}/retry", headers=headers)
        assert retried.status_code == 409, retried.text
        answer = await app.http.post(CHAT, json=ASK, headers=headers)
        answers.append(answer.status_code)
        if answer.status_code == 202:
            task_ids.append(answer.json()["task_id"])
    assert answers == [202, 429, 429, 429]
    assert await app.count("SELECT count(*) FROM tasks") == 2


async def test_parallel_retries_count_the_task_once(app: KeyedApp) -> None:
    headers = await app.key("re-retrier", max_inflight=2)
    task_id = (await app.http.post(CHAT, json=ASK, headers=headers)).json()["task_id"]
    cancelled = await app.http.post(f"/v1/tasks/{task_id}/cancel", headers=headers)
    assert cancelled.status_code == 200
    retries = await asyncio.gather(
        *(app.http.post(f"/v1/tasks/{task_id}/retry", headers=headers) for _ in range(6))
    )
    # One wins; the rest are refused by the task's state or the limit, never counted.
    assert codes(retries)[0] == 202 and codes(retries).count(202) == 1, codes(retries)
    second = await app.http.post(CHAT, json=ASK, headers=headers)
    assert second.status_code == 202, second.text
    third = await app.http.post(CHAT, json=ASK, headers=headers)
    assert third.status_code == 429


async def test_parallel_submits_cannot_overshoot_the_daily_token_quota(app: KeyedApp) -> None:
    prompt = "x" * 400
    per_task = estimate_tokens(prompt) + REPLY_ESTIMATE_TOKENS
    quota = 3 * per_task - 1  # room for three reservations, the third reaching past it
    headers = await app.key("spender", daily_tokens=quota)
    body = {"prompt": prompt, "model": "mock-chat"}
    answers = await asyncio.gather(
        *(app.http.post(CHAT, json=body, headers=headers) for _ in range(20))
    )
    assert codes(answers) == [202] * math.ceil(quota / per_task) + [429] * 17
    refused = next(a for a in answers if a.status_code == 429).json()["error"]
    assert refused["message"].startswith("daily token quota reached")


async def test_a_task_cancelled_before_it_ran_gives_its_tokens_back(app: KeyedApp) -> None:
    headers = await app.key("quitter", daily_tokens=1_000_000)
    key_id = key_id_of(headers["Authorization"].removeprefix("Bearer "))
    assert key_id is not None
    answer = await app.http.post(CHAT, json=ASK, headers=headers)
    assert await app.services.limits.tokens_used(key_id) == estimate_tokens(ASK["prompt"]) + (
        REPLY_ESTIMATE_TOKENS
    )
    cancelled = await app.http.post(f"/v1/tasks/{answer.json()['task_id']}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert await app.services.limits.tokens_used(key_id) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_reserved_tokens_are_settled_with_the_real_usage(mode: str, tmp_path: Path) -> None:
    async with keyed_app(mode, tmp_path, worker=True) as app:
        headers = await app.key("settler", daily_tokens=1_000_000)
        app.http.headers.update(headers)
        key_id = key_id_of(headers["Authorization"].removeprefix("Bearer "))
        assert key_id is not None
        limits = app.services.limits
        answers = await asyncio.gather(
            *(app.http.post(CHAT, json={"prompt": f"count me {n}", "model": "mock-chat"})
              for n in range(3))
        )  # fmt: skip
        used = 0
        for answer in answers:
            task = await finished(app.http, answer.json()["task_id"])
            used += task["usage"]["total_tokens"]
        # The worker settles just after it stores the result: the real usage, no estimate.
        for _ in range(250):
            if await limits.tokens_used(key_id) == used:
                break
            await asyncio.sleep(0.02)
        assert await limits.tokens_used(key_id) == used
        # A task cancelled while it runs keeps its estimate counted: the provider was working.
        slow = await app.http.post(
            CHAT, json={"prompt": "[latency:20000] hm", "model": "mock-chat"}
        )
        task_id = slow.json()["task_id"]
        await reaches(app.http, task_id, {"RUNNING"})
        assert (await app.http.post(f"/v1/tasks/{task_id}/cancel")).status_code == 200
        estimate = estimate_tokens("[latency:20000] hm") + REPLY_ESTIMATE_TOKENS
        assert await limits.tokens_used(key_id) == used + estimate
