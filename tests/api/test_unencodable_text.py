"""A lone surrogate (JSON's `"\\ud800"`, half of a UTF-16 pair) is not text any store can keep: a
submit holding one is a 400 naming the field, on both surfaces and both stores, and nothing is
written (it was a 500 on SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.keyed_app import MODES, KeyedApp, keyed_app

LONE = "\\ud800"  # as it is spelled in the JSON body


@pytest.fixture(params=MODES)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyedApp]:
    async with keyed_app(request.param, tmp_path) as made:
        yield made


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", f'{{"prompt": "hi {LONE}", "model": "mock-chat"}}', "prompt"),
        ("/v1/images/generations", f'{{"prompt": "{LONE}", "model": "mock-image"}}', "prompt"),
        ("/v1/chat/completions", f'{{"prompt": "hi", "model": "mock-chat", '
         f'"conversation_id": "{LONE}"}}', "conversation_id"),
        ("/openai/v1/chat/completions", f'{{"model": "mock-chat", "messages": '
         f'[{{"role": "user", "content": "hi {LONE}"}}]}}', "messages"),
        ("/openai/v1/chat/completions", f'{{"model": "mock-chat", "messages": [{{"role": '
         f'"system", "content": "{LONE}"}}, {{"role": "user", "content": "hi"}}]}}', "messages"),
        ("/openai/v1/chat/completions", f'{{"model": "mock-chat", "user": "{LONE}", "messages": '
         f'[{{"role": "user", "content": "hi"}}]}}', "user"),
        ("/openai/v1/images/generations", f'{{"model": "mock-image", "prompt": "a {LONE}"}}',
         "prompt"),
    ],
)  # fmt: skip
async def test_a_lone_surrogate_is_a_400_naming_its_field(
    app: KeyedApp, path: str, body: str, param: str
) -> None:
    headers = {**await app.key("writer"), "content-type": "application/json"}
    for extra in ({}, {"Idempotency-Key": "surrogate"}):
        answer = await app.http.post(path, content=body.encode(), headers={**headers, **extra})
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["param"] == param
        assert "lone surrogate" in error["message"]
    for table in ("conversations", "tasks", "messages", "idempotency_keys"):
        assert await app.count(f"SELECT count(*) FROM {table}") == 0, table
