"""How a task's event stream ends, on both event logs (memory, and Redis with PostgreSQL), with the
gateway and a worker in-process: a reader past the end gets nothing more; a log that expired ends
with made-up events that carry ids; a log that fails ends the stream with an `error` event (and the
OpenAI stream with an error the SDK raises), while `Prefer: wait` watches the database instead; and
an OpenAI stream whose task is retried after text went out ends with `stream_interrupted`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from aitasks.api.app import create_app
from aitasks.services import Services
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from tests.support.broken_log import failing_reads
from tests.support.embedded import finished, make_settings
from tests.support.services import REDIS_URL, fresh_postgres_database, fresh_redis_prefix

CHAT = "/v1/chat/completions"
MODES = ("memory", "redis")


@dataclass
class App:
    http: httpx.AsyncClient
    services: Services

    def sdk(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url="http://testserver/openai/v1",
            api_key="unused",
            max_retries=0,
            http_client=httpx.AsyncClient(transport=self.http._transport),
        )

    async def submit(self, prompt: str) -> str:
        response = await self.http.post(CHAT, json={"prompt": prompt, "model": "mock-chat"})
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"])

    async def events(self, task_id: str, last_event_id: str | None = None) -> list[dict[str, Any]]:
        """The task's stream as a list of {id, event, data}; comments left out."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        response = await self.http.get(f"/v1/tasks/{task_id}/events", headers=headers)
        assert response.status_code == 200, response.text
        return parse(response.text)


def parse(body: str) -> list[dict[str, Any]]:
    events = []
    for block in body.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value
        if "event" in fields:
            events.append(fields)
    return events


@asynccontextmanager
async def serving(mode: str, folder: Path, **overrides: Any) -> AsyncIterator[App]:
    if mode == "memory":
        settings = make_settings(folder, **overrides)
        async with _app(settings, in_process=True) as app:
            yield app
        return
    with fresh_postgres_database() as database_url, fresh_redis_prefix() as prefix:
        settings = make_settings(
            folder, database_url=database_url, redis_url=REDIS_URL, redis_prefix=prefix, **overrides
        )
        async with _app(settings, in_process=False) as app:
            yield app


@asynccontextmanager
async def _app(settings: Any, *, in_process: bool) -> AsyncIterator[App]:
    db = Database(settings.sqlalchemy_url)
    await upgrade(db)
    await db.dispose()
    app = create_app(settings, embedded=True, in_process_queue=in_process)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=30
        ) as http,
    ):
        yield App(http, app.state.services)


@pytest.fixture(params=MODES)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    async with serving(request.param, tmp_path) as made:
        yield made


async def test_a_reader_at_or_past_the_end_gets_nothing_more(app: App) -> None:
    task_id = await app.submit("hello")
    await finished(app.http, task_id)
    story = await app.events(task_id)
    assert story[-1]["event"] == "done" and all(e.get("id") for e in story)
    # A browser's EventSource reconnects with the last id it saw: it must not get `done` again.
    for past in (story[-1]["id"], "99999999999999"):
        started = time.monotonic()
        assert await app.events(task_id, past) == []
        assert time.monotonic() - started < 1
    # From an id inside the log: exactly what came after it.
    rest = await app.events(task_id, story[1]["id"])
    assert [e["id"] for e in rest] == [e["id"] for e in story[2:]]


async def test_a_finished_task_whose_log_expired_ends_with_events_that_carry_ids(
    app: App,
) -> None:
    task_id = await app.submit("hello")
    await finished(app.http, task_id)
    await app.services.events.reset(task_id)  # as if its log had expired
    status, done = await app.events(task_id)
    assert (status["event"], status["data"]) == ("status", {"status": "SUCCESS"})
    assert done["event"] == "done" and done["data"]["status"] == "SUCCESS"
    assert status["id"] and done["id"]
    assert await app.events(task_id, done["id"]) == []  # reconnecting after it: the end
    (again,) = await app.events(task_id, status["id"])  # after the status: only the done
    assert again == done


async def test_a_stream_whose_log_fails_ends_with_an_error_event(app: App) -> None:
    task_id = await app.submit("slow [latency:1000]")
    failing_reads(app.services, after_calls=1)
    events = await app.events(task_id)
    *before, error = events
    assert before and all(e["event"] != "error" for e in before)
    assert error["event"] == "error" and "id" not in error  # Last-Event-ID stays the last one
    assert error["data"]["error"]["type"] == "service_unavailable"
    assert error["data"]["error"]["last_event_id"] == before[-1]["id"]
    assert f"Last-Event-ID: {before[-1]['id']}" in error["data"]["error"]["message"]


async def test_prefer_wait_watches_the_database_while_the_log_is_down(app: App) -> None:
    task_id = await app.submit("slow [latency:500]")
    failing_reads(app.services, after_calls=0)
    started = time.monotonic()
    response = await app.http.get(f"/v1/tasks/{task_id}", headers={"Prefer": "wait=10"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "SUCCESS"
    assert time.monotonic() - started < 3


async def test_an_openai_stream_whose_log_fails_ends_in_an_api_error(app: App) -> None:
    sdk = app.sdk()
    failing_reads(app.services, after_calls=0)
    stream = await sdk.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert type(caught.value) is openai.APIError  # an error the server sent, not a cut body
    assert caught.value.code == "service_unavailable"
    assert "/v1/tasks/" in caught.value.message
    await sdk.close()


async def test_an_openai_stream_retried_before_any_text_streams_the_new_attempt(app: App) -> None:
    sdk = app.sdk()
    stream = await sdk.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "once more [fail-first:1]"}],
        stream=True,
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    task = await finished(app.http, chunks[0].id.removeprefix("chatcmpl-"))
    assert task["attempts"] == 2 and text == task["result"]
    await sdk.close()


async def test_an_openai_stream_retried_after_text_went_out_ends_in_stream_interrupted(
    app: App,
) -> None:
    sdk = app.sdk()
    stream = await sdk.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "midway [fail-after:3]"}],
        stream=True,
    )  # fmt: skip
    chunks = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            chunks.append(chunk)
    assert type(caught.value) is openai.APIError and caught.value.code == "stream_interrupted"
    sent = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    task_id = chunks[0].id.removeprefix("chatcmpl-")
    assert f"/v1/tasks/{task_id}" in caught.value.message
    # The first attempt's three pieces went out; the retried attempt's text did not follow them.
    task = await finished(app.http, task_id)
    assert task["status"] == "SUCCESS" and task["attempts"] == 2
    assert sent == " ".join(task["result"].split(" ")[:3]) + " "
    await sdk.close()
