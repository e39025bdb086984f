"""The seed's batches on the embedded app: accepted whole and run in the batch lane, results in line
order; a bad line fails the batch naming every bad line, with nothing queued; a cancel."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from aitasks.config import Settings
from tests.support.embedded import EmbeddedFactory, finished
from tests.support.keyed_app import keyed_app
from tests.support.services import row_counts

BATCHES = "/v1/batches"
ENDED = {"completed", "failed", "expired", "cancelled"}


async def ended(client: httpx.AsyncClient, batch_id: str, within: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            batch = (await client.get(f"{BATCHES}/{batch_id}")).json()
            if batch["status"] in ENDED:
                return batch
            await asyncio.sleep(0.05)


async def results(client: httpx.AsyncClient, batch_id: str) -> list[dict[str, Any]]:
    answer = await client.get(f"{BATCHES}/{batch_id}/results")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/jsonl"
    return [json.loads(line) for line in answer.text.splitlines()]


async def test_a_batch_runs_in_the_batch_lane_and_answers_every_line_in_order(
    embedded: EmbeddedFactory,
) -> None:
    async with embedded(reconcile_seconds=0.2) as client:
        chat = await client.post("/v1/chat/completions", headers={"Prefer": "wait=10"},
                                 json={"prompt": "start", "model": "mock-chat"})  # fmt: skip
        conversation = chat.json()["conversation_id"]
        requests: list[dict[str, Any]] = [
            {"prompt": f"question {n}", "model": "mock-chat", "custom_id": f"q{n}"}
            for n in range(30)
        ]
        requests[3]["conversation_id"] = requests[7]["conversation_id"] = conversation
        requests[9] = {"prompt": "a lighthouse", "model": "mock-image", "custom_id": "img"}
        accepted = await client.post(BATCHES, json={"requests": requests, "metadata": {"job": "1"}})
        assert accepted.status_code == 202, accepted.text
        batch = accepted.json()
        assert batch["counts"]["total"] == 30 and batch["metadata"] == {"job": "1"}
        done = await ended(client, batch["id"])
        assert done["status"] == "completed" and done["finished_at"] is not None
        assert done["counts"] == {"total": 30, "pending": 0, "running": 0, "succeeded": 30,
                                  "failed": 0}  # fmt: skip
        lines = await results(client, batch["id"])
        assert [line["index"] for line in lines] == list(range(30))
        assert [line["custom_id"] for line in lines] == [r["custom_id"] for r in requests]
        assert all(line["status"] == "SUCCESS" for line in lines)
        assert lines[0]["result"].startswith('Mock reply to "question 0"')
        assert isinstance(lines[9]["result"], list) and len(lines[9]["result"]) == 1
        task = (await client.get(f"/v1/tasks/{lines[0]['task_id']}")).json()
        assert task["priority"] == "batch" and task["batch_id"] == batch["id"]
        # The two lines that continue the conversation are its next turns, in line order.
        history = (await client.get(f"/v1/conversations/{conversation}/history")).json()
        prompts = [m["content"] for m in history["messages"] if m["role"] == "user"]
        assert prompts == ["start", "question 3", "question 7"]
        listed = (await client.get(BATCHES)).json()["data"]
        assert [b["id"] for b in listed] == [batch["id"]]


async def test_a_bad_line_fails_the_whole_batch_and_queues_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    before = row_counts(settings.sqlalchemy_url)
    requests: list[Any] = [
        {"prompt": "fine", "model": "mock-chat", "custom_id": "a"},
        {"prompt": "who?", "model": "no-such-model"},
        {"prompt": "again", "model": "mock-chat", "custom_id": "a"},
        {"model": "mock-chat"},
        {"prompt": "there", "model": "mock-chat", "conversation_id": "0" * 32},
        "not an object",
        {"prompt": "x" * 2000, "model": "mock-chat"},
    ]
    refused = await client.post(BATCHES, json=requests)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["type"] == "invalid_batch" and error["param"] == "requests"
    assert [(e["line"], e["code"]) for e in error["errors"]] == [
        (2, "unknown_model"), (3, "duplicate_custom_id"), (4, "invalid_request"),
        (5, "not_found"), (6, "invalid_request"), (7, "payload_too_large"),
    ]  # fmt: skip
    assert row_counts(settings.sqlalchemy_url) == before
    failed = (await client.get(f"{BATCHES}/{error['batch_id']}")).json()
    assert failed["status"] == "failed" and len(failed["errors"]) == 6
    assert await results(client, error["batch_id"]) == []
    empty = await client.post(BATCHES, json=[])
    assert empty.status_code == 422 and empty.json()["error"]["errors"][0]["code"] == "empty_batch"


async def test_another_tenants_batch_is_not_found(client: httpx.AsyncClient) -> None:
    for path in ("", "/results"):
        missing = await client.get(f"{BATCHES}/{'0' * 32}{path}")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


async def test_a_cancelled_batch_runs_no_more(embedded: EmbeddedFactory) -> None:
    async with embedded(reconcile_seconds=0.2) as client:
        requests = [{"prompt": f"slow [latency:20000] {n}", "model": "mock-chat"}
                    for n in range(20)]  # fmt: skip
        batch = (await client.post(BATCHES, json=requests)).json()
        await asyncio.sleep(0.3)  # some are running by now
        cancelling = (await client.post(f"{BATCHES}/{batch['id']}/cancel")).json()
        assert cancelling["status"] in ("cancelling", "cancelled")
        done = await ended(client, batch["id"])
        assert done["status"] == "cancelled"
        assert {line["status"] for line in await results(client, batch["id"])} == {"CANCELLED"}


async def test_ten_thousand_lines_are_accepted_in_seconds(embedded: EmbeddedFactory) -> None:
    async with embedded(mock_latency_ms=0) as client:
        requests = [{"prompt": f"line {n}", "model": "mock-chat"} for n in range(10_000)]
        started = time.monotonic()
        accepted = await client.post(BATCHES, json=requests)
        took = time.monotonic() - started
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["counts"]["total"] == 10_000
        assert took < 10, f"accepting took {took:.1f}s"
        some = (await client.get(f"{BATCHES}/{accepted.json()['id']}/results")).text
        assert len(some.splitlines()) == 10_000
        first = json.loads(some.splitlines()[0])
        await finished(client, first["task_id"], within=30)


async def test_a_batch_over_the_limits_is_refused_whole(embedded: EmbeddedFactory) -> None:
    async with embedded(max_batch_requests=3, max_batch_bytes=4000) as client:
        four = await client.post(BATCHES, json=[{"prompt": "x", "model": "mock-chat"}] * 4)
        assert four.status_code == 422
        assert [e["code"] for e in four.json()["error"]["errors"]] == ["too_many_requests"]
        big = await client.post(BATCHES, json=[{"prompt": "y" * 9000, "model": "mock-chat"}] * 3)
        assert big.status_code == 413 and "AITASKS_MAX_BATCH_BYTES" in big.text


async def test_a_batch_past_the_keys_daily_tokens_is_refused(tmp_path: Path) -> None:
    async with keyed_app("embedded", tmp_path) as app:
        key = await app.key("frugal", daily_tokens=5000)
        lines = [{"prompt": "z" * 400, "model": "mock-chat"} for _ in range(10)]
        refused = await app.http.post(BATCHES, headers=key, json=lines)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["limit"] == "daily_tokens"
        assert await app.count("SELECT count(*) FROM tasks") == 0
        fits = await app.http.post(BATCHES, headers=key, json=lines[:2])
        assert fits.status_code == 202, fits.text
