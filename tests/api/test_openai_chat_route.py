"""The OpenAI surface's chat completions (`POST /openai/v1/chat/completions`) are served by a plain
route standing first in the mounted OpenAI app, reached through the gateway's front door, when
well-formed, and handed on to FastAPI's route otherwise (`api/submit_route.py`,
`api/openai/factory.serve_chat_first`). Every answer must be what FastAPI's route alone gives, in
OpenAI's error shape, byte for byte but for the new ids and times: each request below is sent
through the front door, again through the full stack (the mount and the OpenAI app's own stack:
how a traced request goes, the plain route still first in its router), and again without the
plain route, on the same app, and the three answers compared."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from starlette.routing import Match, Mount

from aitasks.api.front_door import FrontDoor
from aitasks.api.openai import routes as openai_routes
from aitasks.api.submit_route import SubmitRoute
from aitasks.errors import ServiceUnavailable
from tests.support.front_door import full_stack, handed_on_bodies
from tests.support.keyed_app import MODES, KeyedApp, keyed_app

CHAT = "/openai/v1/chat/completions"
# What differs between two answers of the same request: the task's id (in the completion's), its
# time, its conversation's id, with or without a space after the colon (SSE chunks).
IDS = re.compile(rb'"(id|created|conversation_id)": ?("[^"]*"|\d+)')
# A body the app's limit refuses, and the most messages a request may carry.
BODY_LIMIT = 4_000
MAX_MESSAGES = 3
JSON = {"Content-Type": "application/json"}
USER = {"role": "user", "content": "hi"}
VALID = {"model": "mock-chat", "messages": [USER]}
FUNCTION = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip


def asgi_app(app: KeyedApp) -> FastAPI:
    return cast(FastAPI, cast(httpx.ASGITransport, app.http._transport).app)


def openai_app(app: FastAPI) -> FastAPI:
    (mount,) = [route for route in app.router.routes if isinstance(route, Mount)
                and route.path == "/openai"]  # fmt: skip
    return cast(FastAPI, mount.app)


@contextmanager
def fastapi_alone(app: FastAPI) -> Iterator[None]:
    """The full stack, and the OpenAI app without its plain route: FastAPI's route answers."""
    routes = openai_app(app).router.routes
    kept = list(routes)
    routes[:] = [route for route in routes if not isinstance(route, SubmitRoute)]
    assert len(routes) == len(kept) - 1
    try:
        with full_stack(app):
            yield
    finally:
        routes[:] = kept


def routed(app: KeyedApp, *, alone: bool) -> AbstractContextManager[None]:
    return fastapi_alone(asgi_app(app)) if alone else nullcontext()


def answer_of(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body, the ids and times masked (and the length: a time's digits)."""
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    return response.status_code, headers, IDS.sub(rb'"\1":-', response.content)


async def three_ways(app: KeyedApp, method: str, path: str, **options: Any) -> list[httpx.Response]:
    """The request through the front door, through the full stack, and to FastAPI's route."""
    answers = [await app.http.request(method, path, **options)]
    for way in (full_stack, fastapi_alone):
        with way(asgi_app(app)):
            answers.append(await app.http.request(method, path, **options))
    return answers


def alike(answers: list[httpx.Response]) -> httpx.Response:
    """The first of `answers`, once each is found the same as it."""
    first = answer_of(answers[0])
    assert all(answer_of(answer) == first for answer in answers[1:]), first
    return answers[0]


async def compared(app: KeyedApp, headers: dict[str, str], body: Any) -> int:
    """The status of a POST answered alike all three ways."""
    return alike(await three_ways(app, "POST", CHAT, headers=headers, content=body)).status_code


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    """A body sent without a Content-Length (counted by the limit as it arrives)."""
    for start in range(0, len(body), 500):
        yield body[start : start + 500]


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


def png_url() -> str:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), (200, 80, 20)).save(out, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(out.getvalue()).decode()}"


def chat(**fields: Any) -> bytes:
    return json_body({**VALID, **fields})


IMAGE_PART = {"type": "image_url", "image_url": {"url": png_url()}}
BROKEN_IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}
# (extra headers, body, status): each sent once each way.
REQUESTS: list[tuple[dict[str, str], bytes | None, int]] = [
    (JSON, chat(), 200),
    (JSON, chat(stream=True), 200),
    (JSON, chat(stream=True, stream_options={"include_usage": True}), 200),
    (JSON, chat(stream=False, temperature=0.5, max_completion_tokens=50, seed=1, extra=1), 200),
    (JSON, chat(tools=[FUNCTION], tool_choice="auto"), 200),
    (JSON, chat(tools=[FUNCTION], tool_choice="required", stream=True), 200),
    (JSON, chat(response_format={"type": "json_object"}), 200),
    (JSON, chat(messages=[{"role": "user", "content": [IMAGE_PART]}]), 200),
    (JSON, chat(service_tier="flex", expires_after=60, store=True), 200),
    ({**JSON, "Idempotency-Key": "once"}, chat(), 200),
    ({**JSON, "Idempotency-Key": "k" * 201}, chat(), 400),
    # FastAPI's reading of the body: JSON for these types only, and strictly.
    ({}, chat(), 400),
    ({"Content-Type": "text/plain"}, chat(), 400),
    ({"Content-Type": "application/json; charset=utf-8"}, chat(), 200),
    ({"Content-Type": "application/merge-patch+json"}, chat(), 200),
    (JSON, None, 400),
    (JSON, b'{"model": "mock-chat", ', 400),
    (JSON, b"[" * 1_500, 400),
    (JSON, b"[]", 400),
    (JSON, b"null", 400),
    (JSON, b'{"model": "mock-chat", "messages": [], "temperature": NaN}', 400),
    (JSON, json_body({"model": "mock-chat"}), 400),
    (JSON, chat(messages=[]), 400),
    (JSON, chat(stream="maybe"), 400),
    (JSON, chat(temperature=5), 400),
    (JSON, chat(messages=[{"role": "robot", "content": "hi"}]), 400),
    (JSON, chat(response_format={"type": "xml"}), 400),
    # Well-formed, refused by the route or the submit (OpenAI's shape, its statuses).
    (JSON, chat(model="no-such-model"), 404),
    (JSON, chat(model="mock-image"), 400),
    (JSON, chat(n=2), 400),
    (JSON, chat(tools=[{"type": "web_search"}]), 400),
    (JSON, chat(conversation_id="nope"), 404),
    (JSON, chat(messages=[USER] * (MAX_MESSAGES + 1)), 413),
    (JSON, chat(messages=[{"role": "user", "content": [BROKEN_IMAGE_PART]}]), 400),
    (JSON, b'{"model": "mock-chat", "messages": [{"role": "user", "content": "\\ud800"}]}', 400),
    (JSON, chat(messages=[{"role": "user", "content": "x" * BODY_LIMIT}]), 413),
]


@pytest.mark.parametrize("mode", MODES)
async def test_each_chat_is_answered_as_fastapi_alone_answers_it(mode: str, tmp_path: Path) -> None:
    async with keyed_app(
        mode, tmp_path, worker=True, max_body_bytes=BODY_LIMIT, max_messages=MAX_MESSAGES
    ) as app:
        key = await app.key("alice")
        for headers, body, status in REQUESTS:
            assert await compared(app, {**key, **headers}, body) == status, (headers, body)
        # A body over the limit without a Content-Length: refused as it arrives.
        big = chat(messages=[{"role": "user", "content": "x" * BODY_LIMIT}])
        answers = []
        for way in (nullcontext, full_stack, fastapi_alone):
            with way(asgi_app(app)):
                answers.append(await app.http.post(
                    CHAT, headers={**key, **JSON}, content=chunked(big)))  # fmt: skip
        too_large = alike(answers)
        assert too_large.status_code == 413
        assert too_large.json()["error"]["type"] == "invalid_request_error"
        # Other methods: the 405 of the documented route, naming POST.
        for method in ("GET", "PUT", "DELETE"):
            refused = alike(await three_ways(app, method, CHAT, headers=key))
            assert refused.status_code == 405 and refused.headers["allow"] == "POST"


@pytest.mark.parametrize("mode", MODES)
async def test_keys_are_checked_and_counted_once(mode: str, tmp_path: Path) -> None:
    async with keyed_app(mode, tmp_path, worker=True) as app:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            # No key: a 401, unless the body is not JSON at all (FastAPI reads it first).
            for body in (chat(), b"{", json_body({"model": "mock-chat"})):
                status = await compared(app, {**headers, **JSON}, body)
                assert status == (400 if body == b"{" else 401)
        # A request the plain route hands on counts once against the key's requests a minute.
        for alone in (False, True):
            key = await app.key(f"limited-{alone}", rpm=2)
            with routed(app, alone=alone):
                sent = [await app.http.post(CHAT, headers={**key, **JSON}, content=body)
                        for body in (b"[]", chat(), chat())]  # fmt: skip
            assert [r.status_code for r in sent] == [400, 200, 429], alone
            limited = sent[2].json()["error"]
            assert (limited["type"], limited["code"]) == ("rate_limit_error", "rate_limited")
            assert "retry-after" in sent[2].headers


@pytest.mark.parametrize("mode", MODES)
async def test_a_full_queue_is_answered_alike(mode: str, tmp_path: Path) -> None:
    # No worker: the one task the queue holds stays there.
    async with keyed_app(mode, tmp_path, max_queue_depth=1) as app:
        key = {**(await app.key("alice")), **JSON}
        seed = {"prompt": "hold the queue", "model": "mock-chat"}
        assert (await app.http.post("/v1/chat/completions", headers=key, json=seed)).is_success
        full = alike(await three_ways(app, "POST", CHAT, headers=key, content=chat()))
        assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"


@pytest.mark.parametrize(
    "error",
    [RuntimeError("a bug"), ServiceUnavailable("the queue cannot be reached")],
    ids=["unexpected", "unavailable"],
)
async def test_errors_on_the_fast_path_are_answered_alike(
    error: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(openai_routes, "submit_task", broken)
    async with keyed_app("embedded", tmp_path) as app:
        key = {**(await app.key("alice")), **JSON}
        transport = httpx.ASGITransport(app=asgi_app(app), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answers = [await http.post(CHAT, headers=key, content=chat())]
            for way in (full_stack, fastapi_alone):
                with way(asgi_app(app)):
                    answers.append(await http.post(CHAT, headers=key, content=chat()))
    failed = alike(answers)
    if isinstance(error, RuntimeError):
        # An unexpected error is a 500 in OpenAI's shape, its traceback only in the log.
        assert failed.status_code == 500
        assert failed.json()["error"] == {
            "message": "the server hit an unexpected error", "type": "server_error",
            "param": None, "code": "internal_error",
        }  # fmt: skip
    else:
        assert failed.status_code == 503
        assert failed.json()["error"]["type"] == "server_error"


@pytest.mark.parametrize("mode", MODES)
async def test_an_idempotent_repeat_is_answered_alike_by_either_route(
    mode: str, tmp_path: Path
) -> None:
    async with keyed_app(mode, tmp_path, worker=True) as app:
        key = {**(await app.key("alice")), **JSON}
        answers = []
        for first_alone in (False, True):
            headers = {**key, "Idempotency-Key": f"key-{first_alone}"}
            sent = []
            for alone in (first_alone, not first_alone, first_alone):
                with routed(app, alone=alone):
                    sent.append(await app.http.post(CHAT, headers=headers, content=chat()))
            # The same key again with another body: refused.
            with routed(app, alone=first_alone):
                other = chat(messages=[{"role": "user", "content": "changed"}])
                sent.append(await app.http.post(CHAT, headers=headers, content=other))
            assert [r.status_code for r in sent] == [200, 200, 200, 422]
            assert len({r.json()["id"] for r in sent[:3]}) == 1
            answers.append([answer_of(r) for r in sent])
        assert answers[0] == answers[1]


async def test_the_plain_route_stands_first_and_serves_posts_only(tmp_path: Path) -> None:
    async with keyed_app("embedded", tmp_path) as app:
        surface = openai_app(asgi_app(app))
        route = surface.router.routes[0]
        assert isinstance(route, SubmitRoute) and route.path == "/v1/chat/completions"
        assert route.router is surface.router
        scope = {"type": "http", "method": "POST", "path": CHAT, "root_path": "/openai"}
        assert route.matches(scope)[0] is Match.FULL
        assert route.matches({**scope, "method": "GET"})[0] is Match.NONE
        schema = (await app.http.get("/openai/openapi.json")).json()
        assert set(schema["paths"]["/v1/chat/completions"]) == {"post"}
        # The front door reaches it through the mount, the scope made as the mount makes it.
        door = asgi_app(app).middleware_stack
        assert isinstance(door, FrontDoor)
        (mounted,) = door.mounted
        sent: dict[str, Any] = {"type": "http", "method": "POST", "path": CHAT, "root_path": ""}
        entered = dict(sent)
        assert mounted.enter(entered)
        assert entered["route"] is route and entered["app"] is surface
        assert entered["root_path"] == "/openai" and entered["path"] == CHAT
        for path in ("/openai/v1/models", "/v1/chat/completions"):
            assert not mounted.enter({**sent, "path": path})


async def test_only_what_fastapi_would_refuse_is_handed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed_on = handed_on_bodies(monkeypatch)
    async with keyed_app("embedded", tmp_path, worker=True) as app:
        key = {**(await app.key("alice")), **JSON}
        for body in (chat(), chat(model="no-such-model"), chat(messages=[]), b"[]"):
            await app.http.post(CHAT, headers=key, content=body)
    assert [json.loads(body) for body in handed_on] == [{**VALID, "messages": []}, []]
