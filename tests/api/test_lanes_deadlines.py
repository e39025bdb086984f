"""Lanes and deadlines through the HTTP surfaces, on the embedded app: the lane a submit lands in
(asked for, or interactive when someone waits on it; `service_tier` on the OpenAI surface), and a
task whose deadline passes while it waits: EXPIRED in the API, its stream and the metrics, with
no model call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aitasks.providers.mock import MockProvider
from tests.support.embedded import finished
from tests.support.keyed_app import keyed_app

CHAT = "/v1/chat/completions"
MODEL = "gemini-2.5-flash"


@pytest.fixture
def model_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    calls: list[str] = []
    original = MockProvider.stream_chat

    def counted(self: MockProvider, request: Any) -> Any:
        calls.append(request.messages[-1].content)
        return original(self, request)

    monkeypatch.setattr(MockProvider, "stream_chat", counted)
    yield calls


async def submitted(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> Any:
    response = await client.post(CHAT, json={"model": MODEL, **body}, headers=headers)
    assert response.status_code in (200, 202), response.text
    return response.json()


async def test_the_lane_a_seed_submit_lands_in(client: httpx.AsyncClient) -> None:
    plain = await submitted(client, {"prompt": "a"})
    assert (await finished(client, plain["task_id"]))["priority"] == "default"
    waited = await submitted(client, {"prompt": "b"}, Prefer="wait=10")
    assert waited["priority"] == "interactive"
    asked = await submitted(client, {"prompt": "c", "priority": "batch"}, Prefer="wait=10")
    assert asked["priority"] == "batch"
    async with client.stream(
        "POST", CHAT, json={"model": MODEL, "prompt": "d", "stream": True}
    ) as stream:
        lines = [line async for line in stream.aiter_lines()]
    task_id = next(line for line in lines if '"task_id"' in line).split('"task_id": "')[1][:32]
    assert (await finished(client, task_id))["priority"] == "interactive"


@pytest.mark.parametrize(
    "body",
    [{"priority": "urgent"}, {"expires_after": 0}, {"timeout": -1}, {"expires_after": 10**9}],
)
async def test_a_bad_lane_or_deadline_is_refused(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post(CHAT, json={"model": MODEL, "prompt": "x", **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == next(iter(body))


async def test_a_task_past_its_deadline_ends_expired_without_a_model_call(
    client: httpx.AsyncClient, model_calls: list[str]
) -> None:
    first = await submitted(client, {"prompt": "slow [latency:2500]"})
    late = await submitted(
        client,
        {"prompt": "never sent", "conversation_id": first["conversation_id"], "expires_after": 1},
    )
    task = await finished(client, late["task_id"])
    assert task["status"] == "EXPIRED"
    assert task["error"]["type"] == "expired" and task["attempts"] == 0
    assert task["started_at"] is None and task["expires_at"] is not None
    assert model_calls == ["slow [latency:2500]"]
    events = (await client.get(f"/v1/tasks/{late['task_id']}/events")).text
    assert '"status": "EXPIRED"' in events and "event: done" in events
    metrics = (await client.get("/metrics")).text
    assert (
        f'aitasks_tasks_finished_total{{model="{MODEL}",queue="gemini",status="EXPIRED"}} 1.0'
        in (metrics)
    )
    listed = (await client.get("/v1/tasks", params={"status": "EXPIRED"})).json()["data"]
    assert [t["task_id"] for t in listed] == [late["task_id"]]


async def test_service_tier_picks_the_lane_on_the_openai_surface(client: httpx.AsyncClient) -> None:
    lanes = {}
    for tier in ("flex", "priority", "default", None):
        body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        if tier:
            body["service_tier"] = tier
        reply = await client.post("/openai/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        task_id = reply.json()["id"].removeprefix("chatcmpl-")
        lanes[tier] = (await client.get(f"/v1/tasks/{task_id}")).json()["priority"]
    assert lanes == {"flex": "batch", "priority": "interactive", "default": "default",
                     None: "interactive"}  # fmt: skip


async def test_metrics_and_status_show_lanes_and_tenants_bounded(tmp_path: Path) -> None:
    # No worker: every task stays waiting.
    async with keyed_app("embedded", tmp_path) as app:
        for n in range(12):
            key = await app.key(f"tenant-{n:02}")
            for _ in range(n + 1):
                answer = await app.http.post(
                    CHAT, headers=key, json={"model": MODEL, "prompt": "x", "priority": "batch"}
                )
                assert answer.status_code == 202, answer.text
        mine = await app.key("me")
        await app.http.post(CHAT, headers=mine, json={"model": MODEL, "prompt": "y"})
        batch = await app.http.post("/v1/batches", headers=mine,
                                    json=[{"prompt": "z", "model": MODEL}] * 3)  # fmt: skip
        assert batch.status_code == 202
        metrics = (await app.http.get("/metrics")).text
        assert 'aitasks_lane_depth{lane="batch",queue="gemini"} 81.0' in metrics
        assert 'aitasks_lane_depth{lane="default",queue="gemini"} 1.0' in metrics
        assert 'aitasks_lane_oldest_waiting_seconds{lane="batch",queue="gemini"}' in metrics
        tenants = {
            line.split('tenant="')[1].split('"')[0]
            for line in metrics.splitlines()
            if line.startswith("aitasks_tenant_depth{")
        }
        # The ten with most waiting by name (me with 4), the rest (tenants 0 to 2) as "other".
        assert tenants == {f"tenant-{n:02}" for n in range(3, 12)} | {"me", "other"}
        assert 'aitasks_tenant_depth{lane="batch",tenant="other"} 6.0' in metrics
        assert 'aitasks_tenant_depth{lane="batch",tenant="tenant-11"} 12.0' in metrics
        status = (await app.http.get("/v1/status", headers=mine)).json()
        assert {row["lane"]: row["depth"] for row in status["mine"]} == {
            "interactive": 0, "default": 1, "batch": 3
        }  # fmt: skip
        lanes = {(r["queue"], r["lane"]): r["depth"] for r in status["lanes"]}
        assert lanes[("gemini", "batch")] == 81 and lanes[("mock", "interactive")] == 0
        assert [b["id"] for b in status["batches"]] == [batch.json()["id"]]
        assert status["batches"][0]["counts"]["pending"] == 3


async def test_a_large_batch_waiting_never_refuses_interactive_work(tmp_path: Path) -> None:
    async with keyed_app("embedded", tmp_path, max_queue_depth=5) as app:
        key = await app.key("busy")
        lines = [{"prompt": f"{n}", "model": MODEL} for n in range(20)]
        batch = await app.http.post("/v1/batches", headers=key, json=lines)
        assert batch.status_code == 202
        for lane in ("interactive", "default"):
            body = {"model": MODEL, "prompt": "hi", "priority": lane}
            answer = await app.http.post(CHAT, headers=key, json=body)
            assert answer.status_code == 202, answer.text
        body = {"model": MODEL, "prompt": "more", "priority": "batch"}
        full = await app.http.post(CHAT, headers=key, json=body)
        assert full.status_code == 429 and full.json()["error"]["type"] == "queue_full"
