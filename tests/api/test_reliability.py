"""Retries, dead letters, cancel, idempotency and backpressure, on the embedded default."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from aitasks.config import Settings
from tests.support.embedded import EmbeddedFactory, finished, reaches
from tests.support.services import query

CHAT = "/v1/chat/completions"


async def submit(
    client: httpx.AsyncClient, prompt: str, conversation_id: str | None = None, **headers: str
) -> dict[str, Any]:
    response = await client.post(
        CHAT,
        json={"prompt": prompt, "model": "mock-chat", "conversation_id": conversation_id},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


async def test_retryable_errors_are_retried_until_success(client: httpx.AsyncClient) -> None:
    task = await finished(client, (await submit(client, "flaky [fail-first:2]"))["task_id"])
    assert task["status"] == "SUCCESS" and task["attempts"] == 3 and task["error"] is None


async def test_a_fatal_error_fails_at_once(client: httpx.AsyncClient) -> None:
    task = await finished(client, (await submit(client, "bad [fail:fatal]"))["task_id"])
    assert task["status"] == "FAILED" and task["attempts"] == 1
    assert task["error"]["type"] == "provider_bad_request"
    assert task["error"]["attempts"] == 1 and "400" in task["error"]["message"]


async def test_retries_stop_at_the_models_max_attempts(client: httpx.AsyncClient) -> None:
    task = await finished(client, (await submit(client, "down [fail:retryable]"))["task_id"])
    assert task["status"] == "FAILED" and task["attempts"] == 3  # mock-chat's max_attempts
    assert task["error"] == {
        "type": "provider_server_error",
        "message": "mock provider: 503 service unavailable",
        "attempts": 3,
    }


async def test_rate_limits_wait_for_retry_after(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    task = await finished(client, (await submit(client, "busy [fail:429]"))["task_id"])
    assert task["status"] == "FAILED" and task["error"]["type"] == "provider_rate_limited"
    assert time.monotonic() - started >= 2 * 0.2  # two waits of the mock's Retry-After


async def test_failed_tasks_are_listed_newest_first_and_can_be_retried(
    client: httpx.AsyncClient,
) -> None:
    failed = [(await submit(client, f"bad {n} [fail:fatal]"))["task_id"] for n in range(3)]
    ok = (await submit(client, "fine"))["task_id"]
    for task_id in [*failed, ok]:
        await finished(client, task_id)

    first = (await client.get("/v1/tasks", params={"status": "FAILED", "limit": 2})).json()
    assert [t["task_id"] for t in first["data"]] == failed[::-1][:2]
    assert first["has_more"] is True
    rest = await client.get(
        "/v1/tasks", params={"status": "FAILED", "limit": 2, "after": first["next_after"]}
    )
    assert [t["task_id"] for t in rest.json()["data"]] == [failed[0]]
    assert rest.json()["has_more"] is False

    retried = await client.post(f"/v1/tasks/{failed[0]}/retry")
    assert retried.status_code == 202 and retried.json()["status"] == "PENDING"
    again = await finished(client, failed[0])
    assert again["status"] == "FAILED" and again["attempts"] == 1  # a fresh set of attempts
    assert (await client.post(f"/v1/tasks/{ok}/retry")).status_code == 409


async def test_cancelling_a_pending_task_means_it_never_runs(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    slow = await submit(client, "slow [latency:1500]")
    conversation = slow["conversation_id"]
    waiting = await submit(client, "second", conversation)  # waits for the first turn
    cancelled = await client.post(f"/v1/tasks/{waiting['task_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    after = await submit(client, "third", conversation)
    assert (await finished(client, after["task_id"]))["status"] == "SUCCESS"
    task = await finished(client, waiting["task_id"])
    assert task["status"] == "CANCELLED" and task["attempts"] == 0 and task["started_at"] is None
    history = (await client.get(f"/v1/conversations/{conversation}/history")).json()
    assert [m["task_id"] for m in history["messages"]].count(waiting["task_id"]) == 1  # no reply


async def test_cancelling_a_running_task_stops_its_provider_call(
    embedded: EmbeddedFactory,
) -> None:
    async with embedded(worker_concurrency=1) as client:
        running = await submit(client, "long [latency:30000]")
        await reaches(client, running["task_id"], {"RUNNING"})
        response = await client.post(f"/v1/tasks/{running['task_id']}/cancel")
        assert response.json()["status"] == "CANCELLED"
        # The only worker slot frees up at once: the next task runs straight away.
        started = time.monotonic()
        nxt = await submit(client, "next")
        assert (await finished(client, nxt["task_id"], within=5))["status"] == "SUCCESS"
        assert time.monotonic() - started < 1.0
        assert (await client.get(f"/v1/tasks/{running['task_id']}")).json()["result"] is None


async def test_cancelling_a_finished_task_is_a_conflict(client: httpx.AsyncClient) -> None:
    done = await finished(client, (await submit(client, "quick"))["task_id"])
    response = await client.post(f"/v1/tasks/{done['task_id']}/cancel")
    assert response.status_code == 409 and response.json()["error"]["type"] == "conflict"
    assert (await client.post("/v1/tasks/nope/cancel")).status_code == 404


async def test_an_idempotency_key_makes_a_repeat_return_the_same_task(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    key = {"Idempotency-Key": "order-42"}
    body = {"prompt": "once only", "model": "mock-chat"}
    responses = await asyncio.gather(*(client.post(CHAT, json=body, headers=key) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 202]
    assert len({r.json()["task_id"] for r in responses}) == 1
    assert query(settings.sqlalchemy_url, "SELECT count(*) FROM tasks") == [(1,)]

    changed = await client.post(CHAT, json={**body, "prompt": "other"}, headers=key)
    assert changed.status_code == 422
    assert changed.json()["error"]["type"] == "idempotency_key_reused"
    assert query(settings.sqlalchemy_url, "SELECT count(*) FROM tasks") == [(1,)]


async def test_a_full_queue_pushes_back_with_429(embedded: EmbeddedFactory) -> None:
    async with embedded(worker_concurrency=1, max_queue_depth=2) as client:
        for n in range(2):
            await submit(client, f"slow {n} [latency:2000]")
        refused = await client.post(CHAT, json={"prompt": "one more", "model": "mock-chat"})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["type"] == "queue_full"
        assert "limit is 2" in refused.json()["error"]["message"]


async def test_a_malformed_last_event_id_is_refused(client: httpx.AsyncClient) -> None:
    task_id = (await submit(client, "hi"))["task_id"]
    for bad in ("1x", "abc", "1-2-3", "-1"):
        response = await client.get(f"/v1/tasks/{task_id}/events", headers={"Last-Event-ID": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["param"] == "Last-Event-ID"


async def test_openai_failures_tell_the_sdk_not_to_resubmit(client: httpx.AsyncClient) -> None:
    body = {"model": "mock-chat", "messages": [{"role": "user", "content": "x [fail:retryable]"}]}
    response = await client.post("/openai/v1/chat/completions", json=body)
    assert response.status_code == 502
    assert response.headers["x-should-retry"] == "false"


async def test_a_repeat_with_its_key_is_answered_even_when_the_queue_is_full(
    embedded: EmbeddedFactory,
) -> None:
    async with embedded(worker_concurrency=1, max_queue_depth=2) as client:
        key = {"Idempotency-Key": "first"}
        first = await submit(client, "slow 0 [latency:2000]", **key)
        await submit(client, "slow 1 [latency:2000]")
        assert (
            await client.post(CHAT, json={"prompt": "more", "model": "mock-chat"})
        ).status_code == 429
        repeat = await client.post(
            CHAT, json={"prompt": "slow 0 [latency:2000]", "model": "mock-chat"}, headers=key
        )
        assert repeat.status_code == 200 and repeat.json()["task_id"] == first["task_id"]
