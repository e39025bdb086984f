"""Reasoning kept apart from the answer, end to end with a DeepSeek-like server (the local OpenAI
fake streams `reasoning_content`): its own field on the task and in history, its own SSE event,
`reasoning_content` on the OpenAI surface (plain and streamed), and never sent back as context."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.embedded import EmbeddedFactory, finished
from tests.support.fake_providers import REPLY, THOUGHT, FakeServer, openai_server
from tests.support.sdk import async_openai


@pytest.fixture
def thinker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeServer, Path]]:
    monkeypatch.setenv("FAKE_REASONER_KEY", "k")
    with openai_server() as server:
        table = tmp_path / "models.toml"
        table.write_text(
            f'[models."fake-reasoner"]\nkind = "chat"\nprovider = "openai"\nqueue = "fake"\n'
            f'base_url = "{server.url}/v1"\napi_key_env = "FAKE_REASONER_KEY"\n'
        )
        yield server, table


def sse(body: str) -> list[tuple[str, Any]]:
    events, kind = [], "message"
    for line in body.splitlines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:])))
    return events


async def test_reasoning_is_its_own_field_event_and_history_entry(
    embedded: EmbeddedFactory, thinker: tuple[FakeServer, Path]
) -> None:
    server, table = thinker
    async with embedded(models_file=table) as client:
        accepted = (await client.post("/v1/chat/completions", json={
            "prompt": "please think", "model": "fake-reasoner"})).json()  # fmt: skip
        task = await finished(client, accepted["task_id"])
        assert task["status"] == "SUCCESS"
        assert task["result"] == "".join(REPLY) and task["reasoning"] == "".join(THOUGHT)
        events = sse((await client.get(f"/v1/tasks/{task['task_id']}/events")).text)
        kinds = [kind for kind, _ in events]
        assert "".join(d["delta"] for k, d in events if k == "reasoning") == "".join(THOUGHT)
        assert kinds.index("reasoning") < kinds.index("delta")  # it came first, apart
        assert "".join(d["delta"] for k, d in events if k == "delta") == "".join(REPLY)
        conversation = accepted["conversation_id"]
        follow = await client.post(
            "/v1/chat/completions",
            json={"prompt": "and then?", "model": "fake-reasoner", "conversation_id": conversation},
        )
        await finished(client, follow.json()["task_id"])  # fmt: skip
        history = (await client.get(f"/v1/conversations/{conversation}/history")).json()
    assert history["messages"][1]["reasoning"] == "".join(THOUGHT)
    assert "reasoning" not in history["messages"][3]
    # Not fed back: the next turn's request carries the answer, not the reasoning.
    sent = server.requests[1]["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": "".join(REPLY)}
    assert "Let me" not in json.dumps(sent)


async def test_reasoning_content_on_the_openai_surface(
    embedded: EmbeddedFactory, thinker: tuple[FakeServer, Path]
) -> None:
    _, table = thinker
    async with embedded(models_file=table) as client:
        sdk = async_openai(client)
        messages: Any = [{"role": "user", "content": "please think"}]
        plain = await sdk.chat.completions.create(model="fake-reasoner", messages=messages)
        message = plain.choices[0].message
        assert message.content == "".join(REPLY)
        assert (message.model_extra or {})["reasoning_content"] == "".join(THOUGHT)
        thought, text = "", ""
        stream = await sdk.chat.completions.create(
            model="fake-reasoner", messages=messages, stream=True
        )
        async for chunk in stream:
            for choice in chunk.choices:
                thought += (choice.delta.model_extra or {}).get("reasoning_content") or ""
                text += choice.delta.content or ""
        assert (thought, text) == ("".join(THOUGHT), "".join(REPLY))
