"""The seed API's chat submit with tools: the task's `tool_calls`, the conversation's pending calls
answered by a submit carrying `tool_results`, the agent loop in history; bad input refused."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from aitasks.config import Settings
from tests.support.embedded import finished
from tests.support.services import row_counts

CHAT = "/v1/chat/completions"
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"term": {"type": "string"}},
            "required": ["term"],
        },
    },
}


async def submit(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post(CHAT, json={"model": "mock-chat", **body})
    assert response.status_code == 202, response.text
    return await finished(client, response.json()["task_id"])


async def test_an_agent_loop_on_the_seed_api(client: httpx.AsyncClient) -> None:
    called = await submit(client, prompt="please lookup the moon", tools=[LOOKUP])
    assert called["status"] == "SUCCESS" and called["result"] == ""
    (call,) = called["tool_calls"]
    assert call["function"] == {"name": "lookup", "arguments": '{"term": "mock"}'}
    # The task's event stream has the call as its own event.
    stream = (await client.get(f"/v1/tasks/{called['task_id']}/events")).text
    made = [
        line[6:] for line in stream.splitlines() if line.startswith("data: ") and "call_" in line
    ]
    assert json.loads(made[0]) == {
        "id": call["id"],
        "name": "lookup",
        "arguments": '{"term": "mock"}',
    }
    assert "event: tool_call" in stream
    conversation = called["conversation_id"]
    answered = await submit(
        client,
        conversation_id=conversation,
        tool_results=[{"tool_call_id": call["id"], "content": "384,400 km away"}],
        tools=[LOOKUP],
    )
    assert "384,400 km away" in answered["result"] and answered["tool_calls"] is None
    history = (await client.get(f"/v1/conversations/{conversation}/history")).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[1]["tool_calls"] == called["tool_calls"]
    assert history[2] == {**history[2], "tool_call_id": call["id"], "content": "384,400 km away"}
    # Answered: nothing is pending any more.
    again = await client.post(CHAT, json={
        "model": "mock-chat", "conversation_id": conversation,
        "tool_results": [{"tool_call_id": call["id"], "content": "twice"}]})  # fmt: skip
    assert again.status_code == 400 and "answers no pending tool call" in again.text


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"prompt": "x", "tools": [{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "required": "all"}}}]},
         400, "is not a JSON schema"),
        ({"prompt": "x", "tool_results": [{"tool_call_id": "c", "content": "r"}]},
         422, "not both"),
        ({}, 422, "a prompt, or tool_results"),
        ({"tool_results": [{"tool_call_id": "call_x", "content": "r"}]},
         400, "answers no pending tool call"),
        ({"prompt": "x", "tools": [LOOKUP], "model": "deepseek-reasoner"},
         400, "model 'deepseek-reasoner' does not support tools"),
        ({"prompt": "x", "response_format": {"type": "json_schema",
                                             "json_schema": {"name": "n", "schema": {"type": 1}}}},
         400, "is not a JSON schema"),
    ],
)  # fmt: skip
async def test_bad_tool_input_on_the_seed_api_writes_nothing(
    client: httpx.AsyncClient, settings: Settings, body: dict[str, Any], status: int, words: str
) -> None:
    before = row_counts(settings.sqlalchemy_url)
    response = await client.post(CHAT, json={"model": "mock-chat", **body})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    assert row_counts(settings.sqlalchemy_url) == before
