"""The hot routes (the poll, the submits) reach their route through the front door
(`api/front_door.py`): fewer layers, the same answers. Each request below is answered through the
front door and again through FastAPI's full stack, on the same app, and the answers compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from aitasks import lifecycle
from tests.support.front_door import full_stack
from tests.support.keyed_app import MODES, KeyedApp, keyed_app

CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}


def asgi_app(app: KeyedApp) -> FastAPI:
    return cast(FastAPI, cast(httpx.ASGITransport, app.http._transport).app)


async def both(app: KeyedApp, method: str, path: str, **options: Any) -> list[httpx.Response]:
    through_door = await app.http.request(method, path, **options)
    with full_stack(asgi_app(app)):
        through_stack = await app.http.request(method, path, **options)
    return [through_door, through_stack]


def same(answers: list[httpx.Response]) -> int:
    door, stack = answers
    assert (door.status_code, door.headers, door.content) == (
        stack.status_code, stack.headers, stack.content,
    )  # fmt: skip
    return door.status_code


@pytest.mark.parametrize("mode", MODES)
async def test_a_poll_is_answered_alike_through_the_door(mode: str, tmp_path: Path) -> None:
    async with keyed_app(mode, tmp_path) as app:
        alice, bob = await app.key("alice"), await app.key("bob")
        made = await app.http.post(
            CHAT, headers={**alice, **JSON}, json={"prompt": "hi", "model": "mock-chat"}
        )
        path = f"/v1/tasks/{made.json()['task_id']}"
        assert same(await both(app, "GET", path, headers=alice)) == 200
        assert same(await both(app, "GET", path, headers={**alice, "Prefer": "wait=0.1"})) == 200
        assert same(await both(app, "GET", path, headers=bob)) == 404
        assert same(await both(app, "GET", path)) == 401
        assert same(await both(app, "GET", "/v1/tasks/nope", headers=alice)) == 404
        # What the hot routes do not serve goes through the full stack either way.
        assert same(await both(app, "HEAD", path, headers=alice)) == 405
        assert same(await both(app, "GET", path + "/", headers=alice)) == 307
        # A body over the limit, declared: refused before any route.
        big = json.dumps({"prompt": "x" * 2_000_000, "model": "mock-chat"})
        assert same(await both(app, "POST", CHAT, headers={**alice, **JSON}, content=big)) == 413


async def test_an_unexpected_error_is_the_same_500_through_the_door(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(lifecycle, "read_task", broken)
    async with keyed_app("embedded", tmp_path) as app:
        key = await app.key("alice")
        transport = httpx.ASGITransport(app=asgi_app(app), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answers = [await http.get("/v1/tasks/abc", headers=key)]
            with full_stack(asgi_app(app)):
                answers.append(await http.get("/v1/tasks/abc", headers=key))
        assert same(answers) == 500
        assert answers[0].json()["error"]["type"] == "internal_error"
