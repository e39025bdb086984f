"""Structured output: `chat.completions.parse` with a Pydantic model through the SDK, json_object,
the seed API's response_format, and a model that does not serve it natively: instructed, its reply
validated, and a reply that does not validate a retryable failure of that attempt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from aitasks.config import Settings
from aitasks.errors import InvalidModelOutput
from aitasks.providers.base import ChatMessage, ToolCall
from aitasks.routing import ModelKind, ModelSpec
from aitasks.worker.chat_request import JSON_SCHEMA_INSTRUCTION, chat_request, check_reply
from tests.support.embedded import EmbeddedFactory, finished
from tests.support.fake_providers import FakeServer, anthropic_server
from tests.support.sdk import async_openai
from tests.support.services import row_counts


class Step(BaseModel):
    explanation: str
    output: int


class Solution(BaseModel):
    steps: list[Step]
    answer: float
    unit: str | None
    exact: bool


async def test_parse_with_a_pydantic_model(client: httpx.AsyncClient) -> None:
    sdk = async_openai(client)
    for parse in (sdk.chat.completions.parse, sdk.beta.chat.completions.parse):
        completion = await parse(
            model="mock-chat",
            messages=[{"role": "user", "content": "solve 8x + 7 = -23"}],
            response_format=Solution,
        )
        parsed = completion.choices[0].message.parsed
        assert parsed == Solution(steps=[], answer=1.0, unit="mock", exact=True)


async def test_json_object(client: httpx.AsyncClient) -> None:
    sdk = async_openai(client)
    completion = await sdk.chat.completions.create(
        model="mock-chat",
        messages=[{"role": "user", "content": "hello"}],
        response_format={"type": "json_object"},
    )
    reply = json.loads(completion.choices[0].message.content or "")
    assert reply["reply"].startswith('Mock reply to "hello"')


async def test_the_seed_api_takes_response_format(client: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"]}  # fmt: skip
    accepted = await client.post(
        "/v1/chat/completions",
        json={"prompt": "a city", "model": "mock-chat", "response_format": {
            "type": "json_schema", "json_schema": {"name": "city", "schema": schema}}},
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    task = await finished(client, accepted.json()["task_id"])
    assert json.loads(task["result"]) == {"city": "mock"}


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}},
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "json_schema", "json_schema": {"name": "not a name!", "schema": {}}},
        {"type": "xml"},
    ],
)
async def test_a_bad_response_format_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, settings: Settings, response_format: dict[str, Any]
) -> None:
    before = row_counts(settings.sqlalchemy_url)
    response = await client.post(
        "/openai/v1/chat/completions",
        json={"model": "mock-chat", "messages": [{"role": "user", "content": "x"}],
              "response_format": response_format},
    )  # fmt: skip
    assert response.status_code == 400, response.text
    assert (response.json()["error"]["param"] or "").startswith("response_format")
    assert row_counts(settings.sqlalchemy_url) == before


def spec(served_by: str, supports: tuple[str, ...] | None = None) -> ModelSpec:
    return ModelSpec("m", ModelKind.CHAT, served_by, "q", supports=supports, served_by=served_by)


def test_a_format_the_provider_lacks_is_instructed_and_not_sent() -> None:
    params = {"response_format": {"type": "json_schema", "name": "s",
                                  "schema": {"type": "object"}}}  # fmt: skip
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "hi")]
    instructed = chat_request(spec("anthropic"), messages, 1, params)
    assert instructed.response_format is None
    assert [m.role for m in instructed.messages] == ["system", "system", "user"]
    assert instructed.messages[1].content.startswith(JSON_SCHEMA_INSTRUCTION)
    native = chat_request(spec("openai"), messages, 1, params)
    assert native.response_format is not None and native.messages == messages
    # A model the table says lacks it is instructed too, though its provider could.
    assert chat_request(spec("openai", ("tools",)), messages, 1, params).response_format is None


def test_a_reply_that_does_not_validate_fails_the_attempt_as_retryable() -> None:
    params = {
        "response_format": {
            "type": "json_schema",
            "name": "s",
            "schema": {
                "type": "object",
                "properties": {"n": {"type": "integer"}},
                "required": ["n"],
            },
        }
    }
    request = chat_request(spec("anthropic"), [ChatMessage("user", "hi")], 1, params)
    assert check_reply(request, '{"n": 3}', []) == '{"n": 3}'
    assert check_reply(request, '```json\n{"n": 3}\n```', []) == '{"n": 3}'  # fence removed
    for bad in ("three", '{"n": "three"}', "{}"):
        with pytest.raises(InvalidModelOutput) as failed:
            check_reply(request, bad, [])
        assert failed.value.retryable
    # A reply that calls a tool is not the answer yet.
    assert check_reply(request, "", [ToolCall("c", "f", "{}")]) == ""


@pytest.fixture
def anthropic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeServer, Path]]:
    """A model served by a local Anthropic server (no native response format)."""
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "k")
    with anthropic_server() as server:
        table = tmp_path / "models.toml"
        table.write_text(
            f'[models."fake-claude"]\nkind = "chat"\nprovider = "anthropic"\nqueue = "fake"\n'
            f'base_url = "{server.url}"\napi_key_env = "FAKE_ANTHROPIC_KEY"\nmax_attempts = 2\n'
        )
        yield server, table


async def test_an_instructed_reply_is_validated_end_to_end(
    embedded: EmbeddedFactory, anthropic: tuple[FakeServer, Path]
) -> None:
    server, table = anthropic
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"]}  # fmt: skip
    wanted = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    async with embedded(models_file=table) as client:
        good = await client.post(
            "/v1/chat/completions",
            json={"prompt": "please json", "model": "fake-claude", "response_format": wanted},
        )
        bad = await client.post("/v1/chat/completions", json={
            "prompt": "just talk", "model": "fake-claude", "response_format": wanted})  # fmt: skip
        answered = await finished(client, good.json()["task_id"])
        failed = await finished(client, bad.json()["task_id"])
    assert answered["status"] == "SUCCESS" and json.loads(answered["result"]) == {"answer": 42}
    sent = server.requests[0]["body"]
    assert "response_format" not in sent and schema == json.loads(
        sent["system"].removeprefix(JSON_SCHEMA_INSTRUCTION)
    )
    # "The moon is far." is no JSON: each attempt failed, retryably, until the last.
    assert failed["status"] == "FAILED" and failed["attempts"] == 2
    assert failed["error"]["type"] == "invalid_output"
