"""The submits (`POST /v1/chat/completions`, `POST /v1/images/generations`) are served by plain
routes ahead of FastAPI's routing when well-formed, and handed on to FastAPI's routes otherwise
(`api/submit_route.py`). Every answer must be what FastAPI's routes alone give, byte for byte but
for the new ids: each request below is sent with the plain routes in place and again without
them, on the same app, and the two answers compared (status, headers, body)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Match

from aitasks.api.front_door import FrontDoor
from aitasks.api.submit_route import SubmitRoute
from tests.support.front_door import handed_on_bodies
from tests.support.keyed_app import MODES, KeyedApp, keyed_app

CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"
# What differs between two answers of the same request: the new task's and conversation's ids, a
# task's times, and the mock's reply (it names its context's digest).
IDS = re.compile(
    rb'"(task_id|conversation_id|created_at|updated_at|started_at|finished_at|result)":"[^"]*"'
)
# A body the app's limit refuses (`max_body_bytes` below).
BODY_LIMIT = 2_000


def asgi_app(app: KeyedApp) -> FastAPI:
    return cast(FastAPI, cast(httpx.ASGITransport, app.http._transport).app)


@contextmanager
def fastapi_alone(app: FastAPI) -> Iterator[None]:
    """The app without the plain submit routes and its front door (`api/front_door.py`):
    FastAPI's stack and routes answer every submit."""
    routes, door = app.router.routes, app.middleware_stack
    assert isinstance(door, FrontDoor)
    kept = list(routes)
    routes[:] = [route for route in routes if not isinstance(route, SubmitRoute)]
    assert len(routes) == len(kept) - 2
    app.middleware_stack = door.full
    try:
        yield
    finally:
        routes[:] = kept
        app.middleware_stack = door


def routed(app: KeyedApp, *, alone: bool) -> AbstractContextManager[None]:
    """FastAPI's routes alone when `alone`, else the app as it is."""
    return fastapi_alone(asgi_app(app)) if alone else nullcontext()


def answer_of(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body, the ids and times masked (and the length: a time's digits)."""
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    return response.status_code, headers, IDS.sub(rb'"\1":"-"', response.content)


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    """A body sent without a Content-Length (counted by the limit as it arrives)."""
    for start in range(0, len(body), 500):
        yield body[start : start + 500]


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


JSON = {"Content-Type": "application/json"}
VALID = {"prompt": "hello", "model": "mock-chat"}
# (path, extra headers, body): each sent once by each route.
REQUESTS: list[tuple[str, dict[str, str], bytes | None]] = [
    (CHAT, JSON, json_body(VALID)),
    (IMAGES, JSON, json_body({"prompt": "a cat", "model": "mock-image"})),
    (CHAT, JSON, json_body({**VALID, "conversation_id": "", "extra": 1})),
    (CHAT, {**JSON, "Prefer": "wait=0.1"}, json_body(VALID)),
    (CHAT, {**JSON, "Idempotency-Key": "k" * 201}, json_body(VALID)),
    # FastAPI's reading of the body: JSON for these types only, and strictly.
    (CHAT, {}, json_body(VALID)),
    (CHAT, {"Content-Type": "text/plain"}, json_body(VALID)),
    (CHAT, {"Content-Type": "application/json; charset=utf-8"}, json_body(VALID)),
    (CHAT, {"Content-Type": "application/merge-patch+json"}, json_body(VALID)),
    (CHAT, JSON, None),
    (CHAT, JSON, b'{"prompt": "hello", '),
    (CHAT, JSON, b"[" * 1_500),
    (CHAT, JSON, b"[]"),
    (CHAT, JSON, b"null"),
    (CHAT, JSON, json_body({"prompt": "hello"})),
    (CHAT, JSON, json_body({**VALID, "prompt": "   "})),
    (CHAT, JSON, json_body({**VALID, "stream": "yes"})),
    (CHAT, JSON, b'{"prompt": "hello", "model": "mock-chat", "timeout": NaN}'),
    (CHAT, JSON, json_body({"model": "mock-chat", "tool_results": []})),
    (IMAGES, JSON, json_body({"model": "mock-image"})),
    # Well-formed, refused by the submit itself.
    (CHAT, JSON, json_body({**VALID, "model": "no-such-model"})),
    (CHAT, JSON, json_body({**VALID, "model": "mock-image"})),
    (CHAT, JSON, b'{"prompt": "\\ud800", "model": "mock-chat"}'),
    (CHAT, JSON, json_body({**VALID, "tool_choice": "required"})),
    (CHAT, JSON, json_body({**VALID, "conversation_id": "nope"})),
    (CHAT, JSON, json_body({**VALID, "callback_events": ["task.running"]})),
    (CHAT, JSON, json_body({**VALID, "prompt": "x" * 1_500})),
    (CHAT, JSON, json_body({**VALID, "prompt": "x" * BODY_LIMIT})),
]


async def compared(app: KeyedApp, path: str, headers: dict[str, str], body: Any) -> None:
    fast = await app.http.post(path, headers=headers, content=body)
    with fastapi_alone(asgi_app(app)):
        alone = await app.http.post(path, headers=headers, content=body)
    assert answer_of(fast) == answer_of(alone), (path, headers, body)


@pytest.mark.parametrize("mode", MODES)
async def test_each_submit_is_answered_as_fastapi_alone_answers_it(
    mode: str, tmp_path: Path
) -> None:
    async with keyed_app(mode, tmp_path, max_body_bytes=BODY_LIMIT) as app:
        key = await app.key("alice")
        for path, headers, body in REQUESTS:
            await compared(app, path, {**key, **headers}, body)
        # A body over the limit without a Content-Length: refused as it arrives.
        big = json_body({**VALID, "prompt": "x" * BODY_LIMIT})
        fast = await app.http.post(CHAT, headers={**key, **JSON}, content=chunked(big))
        with fastapi_alone(asgi_app(app)):
            alone = await app.http.post(CHAT, headers={**key, **JSON}, content=chunked(big))
        assert fast.status_code == 413 and answer_of(fast) == answer_of(alone)
        # Other methods: the 405 of the documented route, naming POST.
        for method in ("GET", "PUT", "DELETE"):
            refused = await app.http.request(method, CHAT, headers=key)
            with fastapi_alone(asgi_app(app)):
                documented = await app.http.request(method, CHAT, headers=key)
            assert refused.status_code == 405 and refused.headers["allow"] == "POST"
            assert answer_of(refused) == answer_of(documented)


@pytest.mark.parametrize("mode", MODES)
async def test_keys_are_checked_and_counted_once(mode: str, tmp_path: Path) -> None:
    async with keyed_app(mode, tmp_path) as app:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            # No key: a 401, unless the body is not JSON at all (FastAPI reads it first).
            for body in (json_body(VALID), b"{", json_body({"prompt": "hi"})):
                await compared(app, CHAT, {**headers, **JSON}, body)
        # A request the plain route hands on counts once against the key's requests a minute.
        for alone in (False, True):
            key = await app.key(f"limited-{alone}", rpm=2)
            with routed(app, alone=alone):
                invalid = await app.http.post(CHAT, headers={**key, **JSON}, content=b"[]")
                accepted = await app.http.post(CHAT, headers={**key, **JSON}, json=VALID)
                limited = await app.http.post(CHAT, headers={**key, **JSON}, json=VALID)
            assert (invalid.status_code, accepted.status_code, limited.status_code) == (
                422, 202, 429,
            ), alone  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
async def test_an_idempotent_repeat_is_answered_alike_by_either_route(
    mode: str, tmp_path: Path
) -> None:
    async with keyed_app(mode, tmp_path) as app:
        key = {**(await app.key("alice")), **JSON}
        answers = []
        for first_alone in (False, True):
            headers = {**key, "Idempotency-Key": f"key-{first_alone}"}
            sent = []
            for alone in (first_alone, not first_alone, first_alone):
                with routed(app, alone=alone):
                    sent.append(await app.http.post(CHAT, headers=headers, json=VALID))
            # The same body under the same key again, but changed: refused.
            with routed(app, alone=first_alone):
                other = {**VALID, "prompt": "changed"}
                sent.append(await app.http.post(CHAT, headers=headers, json=other))
            assert [r.status_code for r in sent] == [202, 200, 200, 422]
            assert len({r.json()["task_id"] for r in sent[:3]}) == 1
            answers.append([answer_of(r) for r in sent])
        assert answers[0] == answers[1]


@pytest.mark.parametrize("mode", MODES)
async def test_a_submit_that_waits_or_streams_is_answered_alike(mode: str, tmp_path: Path) -> None:
    async with keyed_app(mode, tmp_path, worker=True) as app:
        key = {**(await app.key("alice")), **JSON}
        await compared(app, CHAT, {**key, "Prefer": "wait=10"}, json_body(VALID))
        streamed = json_body({**VALID, "stream": True})
        fast = await app.http.post(CHAT, headers=key, content=streamed)
        with fastapi_alone(asgi_app(app)):
            alone = await app.http.post(CHAT, headers=key, content=streamed)
        assert fast.headers["content-type"].startswith("text/event-stream")
        assert (fast.status_code, fast.headers) == (alone.status_code, alone.headers)
        # The same events, in the same order.
        events = [[line for line in r.text.splitlines() if line.startswith("event:")]
                  for r in (fast, alone)]  # fmt: skip
        assert events[0] == events[1] and events[0][-1] == "event: done"


async def test_the_plain_routes_stand_ahead_and_serve_posts_only(tmp_path: Path) -> None:
    async with keyed_app("embedded", tmp_path) as app:
        routes = asgi_app(app).router.routes
        served = {route.path: route for route in routes[:3] if isinstance(route, SubmitRoute)}
        assert set(served) == {CHAT, IMAGES}
        scope = {"type": "http", "method": "POST", "path": CHAT, "root_path": ""}
        assert served[CHAT].matches(scope)[0] is Match.FULL
        assert served[CHAT].matches({**scope, "method": "GET"})[0] is Match.NONE
        schema = (await app.http.get("/openapi.json")).json()
        assert {"post"} == set(schema["paths"][CHAT]) == set(schema["paths"][IMAGES])


async def test_only_what_fastapi_would_refuse_is_handed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed_on = handed_on_bodies(monkeypatch)
    async with keyed_app("embedded", tmp_path) as app:
        key = {**(await app.key("alice")), **JSON}
        for body in (VALID, {**VALID, "model": "no-such-model"}, {**VALID, "prompt": " "}, []):
            await app.http.post(CHAT, headers=key, json=body)
        await app.http.post(IMAGES, headers=key, json={"prompt": "a cat", "model": "mock-image"})
    assert [json.loads(body) for body in handed_on] == [{**VALID, "prompt": " "}, []]
