"""What the Responses API refuses, through the official SDK with auth on: each in OpenAI's error
shape with the status that makes the SDK raise its matching exception, and nothing written. An
unknown or another tenant's response (as `previous_response_id` too) or conversation is a 404;
built-in tools, unknown input items and parts, prompt templates and malformed bodies are 400s;
the chat path's limits hold (too many messages a 413, a key's tasks in flight a 429)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.support.keyed_app import KeyedAppFactory
from tests.support.sdk import sdk_for, sdk_with, until_ended

BUILT_IN_TOOLS = (
    "web_search", "file_search", "computer_use_preview", "code_interpreter", "image_generation",
    "mcp",
)  # fmt: skip


async def test_a_response_has_the_chat_paths_limits(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded", max_messages=2) as app, sdk_for(app, "ada") as sdk:
        before = await app.stored()
        with pytest.raises(openai.APIStatusError, match="AITASKS_MAX_MESSAGES") as refused:
            await sdk.responses.create(
                model="mock-chat", input=[{"role": "user", "content": str(n)} for n in range(3)]
            )
        assert refused.value.status_code == 413
        assert await app.stored() == before


async def test_bad_input_is_refused_in_openais_shape_and_writes_nothing(
    app_on: KeyedAppFactory,
) -> None:
    async with app_on("redis") as app, sdk_for(app, "ada") as ada, sdk_for(app, "bob") as bob:
        mine = await ada.responses.create(model="mock-chat", input="ada's")
        theirs = mine.conversation  # none was named: a response makes its own, kept private
        assert theirs is None
        seed = await app.http.post(
            "/v1/chat/completions", json={"prompt": "ada's own", "model": "mock-chat"},
            headers={"Authorization": f"Bearer {ada.api_key}", "Prefer": "wait=10"},
        )  # fmt: skip
        adas_conversation = seed.json()["conversation_id"]
        before = await app.stored()
        unknown = "resp_" + "0" * 32
        for previous in (unknown, "resp_nonsense", mine.id):
            with pytest.raises(openai.NotFoundError, match="not found"):
                await bob.responses.create(
                    model="mock-chat", input="hi", previous_response_id=previous
                )
        for conversation in (adas_conversation, "0" * 32):
            with pytest.raises(openai.NotFoundError, match="not found"):
                await bob.responses.create(model="mock-chat", input="hi", conversation=conversation)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.cancel(mine.id)
        with pytest.raises(openai.BadRequestError, match="item_reference"):
            await ada.responses.create(
                model="mock-chat", input=[{"type": "item_reference", "id": "msg_1"}]
            )
        for tool in BUILT_IN_TOOLS:
            with pytest.raises(openai.BadRequestError, match=tool):
                await ada.responses.create(
                    model="mock-chat", input="hi", tools=[{"type": tool}],  # type: ignore[list-item]
                )  # fmt: skip
        with pytest.raises(openai.BadRequestError, match="input_file"):
            await ada.responses.create(
                model="mock-chat",
                input=[{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
            )
        with pytest.raises(openai.BadRequestError, match="input_audio"):
            await ada.responses.create(
                model="mock-chat",
                input=[{"role": "user", "content": [{"type": "input_audio", "data": "x"}]}],  # type: ignore[list-item]
            )
        with pytest.raises(openai.BadRequestError, match="prompt templates"):
            await ada.responses.create(
                model="mock-chat", input="hi", prompt={"id": "pmpt_1", "version": "2"}
            )
        with pytest.raises(openai.BadRequestError, match="both"):
            await ada.responses.create(
                model="mock-chat", input="hi", previous_response_id=mine.id,
                conversation=adas_conversation,
            )  # fmt: skip
        with pytest.raises(openai.NotFoundError, match="model"):
            await ada.responses.create(model="no-such-model", input="hi")
        assert await app.stored() == before
        wrong = {"Authorization": "Bearer ait_wrong_key"}
        async with sdk_with(app, wrong) as anonymous:
            with pytest.raises(openai.AuthenticationError):
                await anonymous.responses.create(model="mock-chat", input="hi")


MALFORMED: list[Any] = [
    {"input": ""},
    {"input": "   "},
    {"input": [1, 2]},
    {"input": [{"type": "reasoning", "summary": []}]},
    {"input": [{"role": "user", "content": None}]},
    {"input": [{"role": "tool", "content": "x"}]},
    {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
    {"input": [{"type": "function_call", "call_id": "c", "name": "f" * 80, "arguments": "{}"},
               {"type": "function_call_output", "call_id": "c", "output": "o"}]},
    {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}},
               {"type": "function_call_output", "call_id": "c", "output": "o"}]},
    {"input": [{"type": "function_call_output", "call_id": "c", "output": 7}]},
    {"input": "hi", "metadata": {"k" * 65: "v"}},
    {"input": "hi", "metadata": {"k": "v" * 513}},
    {"input": "hi", "metadata": {f"k{n}": "v" for n in range(17)}},
    {"input": "hi", "tool_choice": {"type": "web_search"}},
    {"input": "hi", "tool_choice": "sometimes"},
    {"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
    {"input": "hi", "tools": [{"type": "function"}]},
    {"input": "hi", "conversation": {"nope": 1}},
    {"input": "hi", "prompt": {"id": "pmpt_1"}},
    '{"model": "mock-chat", "input": "hi", "metadata": {"k": "\\ud800"}}',
]  # fmt: skip


async def test_malformed_requests_are_400_and_write_nothing(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded") as app:
        headers = await app.key("ada")
        before = await app.stored()
        for body in MALFORMED:
            if isinstance(body, str):
                answer = await app.http.post(
                    "/openai/v1/responses", content=body,
                    headers={**headers, "content-type": "application/json"},
                )  # fmt: skip
            else:
                sent = {"model": "mock-chat", **body}
                answer = await app.http.post("/openai/v1/responses", json=sent, headers=headers)
            assert answer.status_code == 400, (body, answer.text)
            error = answer.json()["error"]
            assert error["type"] == "invalid_request_error" and error["message"]
        assert await app.stored() == before


async def test_a_keys_tasks_in_flight_limit_counts_responses(app_on: KeyedAppFactory) -> None:
    async with app_on("redis") as app:
        headers = await app.key("carl", max_inflight=1)
        async with sdk_with(app, headers) as sdk:
            slow = await sdk.responses.create(
                model="mock-chat", input="[latency:3000] slow", background=True
            )
            before = await app.stored()
            with pytest.raises(openai.RateLimitError):
                await sdk.responses.create(model="mock-chat", input="one more", background=True)
            assert await app.stored() == before
            await sdk.responses.cancel(slow.id)  # its slot is free again
            again = await sdk.responses.create(model="mock-chat", input="one more", background=True)
            assert (await until_ended(sdk, again.id)).status == "completed"
