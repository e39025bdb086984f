"""OpenAI's Batch API through the official SDK, unchanged, over the ASGI transport with auth on: on
the embedded backends and on PostgreSQL + Redis (`keyed_app`'s modes). A batch end to end
(files.create, batches.create, retrieve until completed, the output file with every custom_id
once), the error file, cancel, and every bad input refused: a clear 4xx, or a `failed` batch
naming the lines, with nothing queued."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import openai
import pytest
from sqlalchemy import text

from aitasks.store.models import utcnow
from tests.support.keyed_app import MODES, KeyedAppFactory
from tests.support.sdk import sdk_for

CHAT = "/v1/chat/completions"
ENDED = {"completed", "failed", "expired", "cancelled"}


def jsonl(lines: list[Any]) -> bytes:
    return "".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines
    ).encode()


def chat_line(custom_id: str, prompt: str, model: str = "mock-chat", **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}]
    body = {"model": model, "messages": messages, **body}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


async def until_ended(sdk: openai.AsyncOpenAI, batch_id: str, within: float = 60) -> Any:
    async with asyncio.timeout(within):
        while True:
            batch = await sdk.batches.retrieve(batch_id)
            if batch.status in ENDED:
                return batch
            await asyncio.sleep(0.1)


async def run_batch(sdk: openai.AsyncOpenAI, lines: list[Any], endpoint: str = CHAT) -> Any:
    uploaded = await sdk.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    batch = await sdk.batches.create(
        input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h",  # type: ignore[arg-type]
        metadata={"job": "nightly"},
    )  # fmt: skip
    return batch


@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_runs_a_batch_end_to_end(app_on: KeyedAppFactory, mode: str) -> None:
    async with app_on(mode) as app, sdk_for(app, "nightly") as sdk:
        lines = [chat_line(f"req-{n}", f"summarise item {n}") for n in range(40)]
        lines[5] = chat_line("req-5", "refused [fail:fatal]")
        batch = await run_batch(sdk, lines)
        assert batch.status == "in_progress" and batch.request_counts is not None
        assert batch.request_counts.total == 40 and batch.metadata == {"job": "nightly"}
        done = await until_ended(sdk, batch.id)
        assert done.status == "completed" and done.completed_at is not None
        assert done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (39, 1)
        assert done.output_file_id and done.error_file_id
        output = (await sdk.files.content(done.output_file_id)).text
        errors = (await sdk.files.content(done.error_file_id)).text
        answered = [json.loads(line) for line in output.splitlines()]
        failed = [json.loads(line) for line in errors.splitlines()]
        ids = [line["custom_id"] for line in answered + failed]
        assert sorted(ids) == sorted(f"req-{n}" for n in range(40)) and len(set(ids)) == 40
        first = next(line for line in answered if line["custom_id"] == "req-0")
        body = first["response"]["body"]
        assert first["response"]["status_code"] == 200 and first["error"] is None
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"].startswith(
            'Mock reply to "summarise item 0"'
        )
        assert failed[0]["response"]["status_code"] == 400
        assert failed[0]["response"]["body"]["error"]["code"] == "provider_bad_request"
        info = await sdk.files.retrieve(done.output_file_id)
        assert info.purpose == "batch_output" and info.bytes == len(output.encode())
        again = (await sdk.files.content(done.output_file_id)).text
        assert again == output  # made from the same tasks, byte for byte
        listed = await sdk.batches.list(limit=5)
        assert [b.id for b in listed.data] == [batch.id]


async def test_images_and_responses_lines(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded") as app, sdk_for(app, "mixed") as sdk:
        images = [{"custom_id": f"img-{n}", "method": "POST", "url": "/v1/images/generations",
                   "body": {"model": "mock-image", "prompt": f"a boat {n}", "size": "64x64"}}
                  for n in range(2)]  # fmt: skip
        responses = [{"custom_id": "r-1", "method": "POST", "url": "/v1/responses",
                      "body": {"model": "mock-chat", "input": "hello there",
                               "instructions": "Be brief."}}]  # fmt: skip
        drawn = await until_ended(sdk, (await run_batch(sdk, images, "/v1/images/generations")).id)
        said = await until_ended(sdk, (await run_batch(sdk, responses, "/v1/responses")).id)
        assert drawn.status == said.status == "completed"
        image_lines = (await sdk.files.content(drawn.output_file_id or "")).text.splitlines()
        assert len(json.loads(image_lines[0])["response"]["body"]["data"]) == 1
        reply = json.loads((await sdk.files.content(said.output_file_id or "")).text)
        assert reply["response"]["body"]["object"] == "response"
        assert reply["response"]["body"]["output_text"].startswith('Mock reply to "hello there"')


async def test_bad_lines_fail_the_batch_and_queue_nothing(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded") as app, sdk_for(app, "careless") as sdk:
        lines: list[Any] = [
            chat_line("a", "fine"),
            "{not json",
            chat_line("a", "a duplicate custom_id"),
            chat_line("c", "who?", model="no-such-model"),
            {**chat_line("d", "elsewhere"), "url": "/v1/embeddings"},
            chat_line("e", "an image model", model="mock-image"),
            {"custom_id": "f", "method": "GET", "url": CHAT, "body": {}},
            {"method": "POST", "url": CHAT, "body": {}},
            chat_line("g", "no messages") | {"body": {"model": "mock-chat"}},
        ]
        batch = await run_batch(sdk, lines)
        assert batch.status == "failed" and batch.failed_at is not None
        assert batch.errors is not None and batch.errors.data is not None
        found = [(e.line, e.code) for e in batch.errors.data]
        assert found == [
            (2, "invalid_json"), (3, "duplicate_custom_id"), (4, "unknown_model"),
            (5, "invalid_url"), (6, "wrong_model_kind"), (7, "invalid_method"),
            (8, "invalid_custom_id"), (9, "invalid_request"),
        ]  # fmt: skip
        assert await app.count("SELECT count(*) FROM tasks") == 0
        assert (await sdk.batches.retrieve(batch.id)).status == "failed"


async def test_bad_requests_are_clear_4xx(app_on: KeyedAppFactory) -> None:
    async with (
        app_on("embedded", max_batch_bytes=2000) as app,
        sdk_for(app, "owner") as owner,
        sdk_for(app, "other") as other,
    ):
        with pytest.raises(openai.APIStatusError) as too_big:
            await owner.files.create(
                file=("big.jsonl", jsonl([chat_line(f"{n}", "x" * 100) for n in range(30)])),
                purpose="batch",
            )
        assert too_big.value.status_code == 413
        with pytest.raises(openai.BadRequestError):
            await owner.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
        mine = await owner.files.create(file=("a.jsonl", jsonl([chat_line("x", "hi")])),
                                        purpose="batch")  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            await other.batches.create(input_file_id=mine.id, endpoint=CHAT,
                                       completion_window="24h")  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            await other.files.content(mine.id)
        with pytest.raises(openai.BadRequestError):
            await owner.batches.create(input_file_id=mine.id, endpoint="/v1/embeddings",  # type: ignore[arg-type]
                                       completion_window="24h")  # fmt: skip
        assert await app.count("SELECT count(*) FROM tasks") == 0
        gone = await owner.files.delete(mine.id)
        assert gone.deleted
        with pytest.raises(openai.NotFoundError):
            await owner.files.retrieve(mine.id)


async def test_a_cancelled_batch(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded") as app, sdk_for(app, "impatient") as sdk:
        lines = [chat_line(f"s{n}", "slow [latency:20000]") for n in range(10)]
        batch = await run_batch(sdk, lines)
        await asyncio.sleep(0.3)
        cancelling = await sdk.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        done = await until_ended(sdk, batch.id)
        assert done.status == "cancelled" and done.cancelled_at is not None
        assert done.output_file_id is None and done.error_file_id
        errors = (await sdk.files.content(done.error_file_id)).text.splitlines()
        assert {json.loads(line)["error"]["code"] for line in errors} == {"batch_cancelled"}


async def test_lines_not_started_within_the_window_expire(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded", worker_concurrency=1) as app, sdk_for(app, "late") as sdk:
        lines = [chat_line(f"w{n}", f"take your time [latency:1000] {n}") for n in range(5)]
        batch = await run_batch(sdk, lines)
        # The completion window runs out while the first line runs.
        async with app.db.session() as session, session.begin():
            await session.execute(
                text("UPDATE tasks SET expires_at = :past WHERE batch_id = :batch"),
                {"past": utcnow() - timedelta(seconds=1), "batch": batch.id},
            )
        done = await until_ended(sdk, batch.id)
        assert done.status == "expired" and done.expired_at is not None
        assert done.request_counts is not None and done.request_counts.completed <= 1
        errors = (await sdk.files.content(done.error_file_id or "")).text.splitlines()
        codes = {json.loads(line)["error"]["code"] for line in errors}
        assert codes == {"batch_expired"} and len(errors) >= 4
