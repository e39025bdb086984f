"""Each chat adapter maps a request's structure to its provider's own shape and reads it back,
against a local server speaking that provider's protocol: tools and the choice among them, tool
calls and their results in the context, images, structured output, and reasoning kept apart."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image

from aitasks.config import Settings
from aitasks.providers import make_provider
from aitasks.providers.base import (
    ChatMessage,
    ChatPiece,
    ChatRequest,
    ImagePart,
    Provider,
    Reasoning,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from tests.support.fake_providers import CALL_ARGS, JSON_REPLY, REPLY, THOUGHT, FakeServer
from tests.support.provider_specs import CHAT_PROVIDERS, spec_for

WEATHER = Tool(
    "get_weather",
    {"type": "object", "properties": {"city": {"type": ["string", "null"]}},
     "required": ["city"], "additionalProperties": False},
    "The weather in a city.",
)  # fmt: skip
CALLED = ToolCall("call_7", "get_weather", '{"city": "Oslo"}')
LOOP = [
    ChatMessage("user", "weather?"),
    ChatMessage("assistant", "", tool_calls=(CALLED,)),
    ChatMessage("tool", "snowing", tool_call_id="call_7"),
]


def png(width: int = 6, height: int = 4) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(params=list(CHAT_PROVIDERS))
def chat(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, FakeServer, Callable[[], Provider]]]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "secret-key")
    make_server, suffix = CHAT_PROVIDERS[request.param]
    with make_server() as server:
        spec = spec_for(request.param, server.url + suffix)
        yield request.param, server, lambda: make_provider(spec, Settings(_env_file=None))  # type: ignore[call-arg]


async def run(provider: Provider, request: ChatRequest) -> list[ChatPiece]:
    try:
        return [piece async for piece in provider.stream_chat(request)]
    finally:
        await provider.close()


def request_of(messages: list[ChatMessage], **fields: Any) -> ChatRequest:
    return ChatRequest(spec_for("x", ""), messages, **fields)


async def test_tools_are_offered_and_a_call_comes_back_whole(
    chat: tuple[str, FakeServer, Callable[[], Provider]],
) -> None:
    name, server, make = chat
    pieces = await run(
        make(),
        request_of([ChatMessage("user", "please call")], tools=(WEATHER,),
                   tool_choice=ToolChoice("required"), parallel_tool_calls=False),
    )  # fmt: skip
    calls = [p for p in pieces if isinstance(p, ToolCall)]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", CALL_ARGS)]
    assert calls[0].id
    assert not [p for p in pieces if isinstance(p, str) and p]
    body = server.requests[0]["body"]
    if name == "openai":
        (tool,) = body["tools"]
        assert tool == {"type": "function", "function": {
            "name": "get_weather", "parameters": WEATHER.parameters,
            "description": "The weather in a city."}}  # fmt: skip
        assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    elif name == "anthropic":
        (tool,) = body["tools"]
        assert tool["name"] == "get_weather" and tool["input_schema"] == WEATHER.parameters
        assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    else:
        (declaration,) = body["tools"][0]["functionDeclarations"]
        assert declaration["name"] == "get_weather"
        # JSON schema as Gemini's OpenAPI subset: types upper case, null as nullable.
        assert declaration["parameters"] == {
            "type": "OBJECT", "required": ["city"],
            "properties": {"city": {"type": "STRING", "nullable": True}},
        }  # fmt: skip
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


async def test_a_named_tool_choice(chat: tuple[str, FakeServer, Callable[[], Provider]]) -> None:
    name, server, make = chat
    await run(make(), request_of([ChatMessage("user", "hi")], tools=(WEATHER,),
                                 tool_choice=ToolChoice("function", "get_weather")))  # fmt: skip
    body = server.requests[0]["body"]
    expected = {
        "openai": {"type": "function", "function": {"name": "get_weather"}},
        "anthropic": {"type": "tool", "name": "get_weather"},
    }
    if name == "gemini":
        assert body["toolConfig"]["functionCallingConfig"] == {
            "mode": "ANY", "allowedFunctionNames": ["get_weather"]}  # fmt: skip
    else:
        assert body["tool_choice"] == expected[name]


async def test_calls_and_results_in_the_context(
    chat: tuple[str, FakeServer, Callable[[], Provider]],
) -> None:
    name, server, make = chat
    pieces = await run(make(), request_of(LOOP, tools=(WEATHER,)))
    assert "".join(p for p in pieces if isinstance(p, str)) == "".join(REPLY)
    body = server.requests[0]["body"]
    if name == "openai":
        assistant, result = body["messages"][1:]
        assert assistant["tool_calls"] == [{"id": "call_7", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]  # fmt: skip
        assert result == {"role": "tool", "content": "snowing", "tool_call_id": "call_7"}
    elif name == "anthropic":
        assistant, result = body["messages"][1:]
        assert assistant == {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_7",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                }
            ],
        }
        assert result == {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_7", "content": "snowing"}]}  # fmt: skip
    else:
        model, result = body["contents"][1:]
        assert model == {
            "role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}],
        }
        assert result == {"role": "user", "parts": [{"functionResponse": {
            "name": "get_weather", "response": {"content": "snowing"}}}]}  # fmt: skip


async def test_images_go_as_the_providers_own_blocks(
    chat: tuple[str, FakeServer, Callable[[], Provider]],
) -> None:
    name, server, make = chat
    image = png()
    encoded = base64.b64encode(image).decode()
    message = ChatMessage("user", "what is this?", images=(ImagePart("image/png", data=image),))
    await run(make(), request_of([message]))
    body = server.requests[0]["body"]
    if name == "openai":
        assert body["messages"][0]["content"] == [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
        ]
    elif name == "anthropic":
        assert body["messages"][0]["content"] == [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": encoded}},
            {"type": "text", "text": "what is this?"},
        ]  # fmt: skip
    else:
        assert body["contents"][0]["parts"] == [
            {"text": "what is this?"},
            {"inlineData": {"mimeType": "image/png", "data": encoded}},
        ]


# Gemini is only sent this service's files (it does not fetch URLs).
@pytest.mark.parametrize("chat", ["openai", "anthropic"], indirect=True)
async def test_a_remote_image_url_is_passed_to_providers_that_fetch_it(
    chat: tuple[str, FakeServer, Callable[[], Provider]],
) -> None:
    name, server, make = chat
    url = "https://images.example/cat.png"
    message = ChatMessage("user", "and this?", images=(ImagePart(url=url),))
    await run(make(), request_of([message]))
    content = server.requests[0]["body"]["messages"][0]["content"]
    if name == "openai":
        assert content[1] == {"type": "image_url", "image_url": {"url": url}}
    else:
        assert content[0] == {"type": "image", "source": {"type": "url", "url": url}}


# Anthropic has no native response format: the worker instructs and validates.
@pytest.mark.parametrize("chat", ["openai", "gemini"], indirect=True)
async def test_structured_output_where_it_is_native(
    chat: tuple[str, FakeServer, Callable[[], Provider]],
) -> None:
    name, server, make = chat
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"], "additionalProperties": False}  # fmt: skip
    wanted = ResponseFormat("json_schema", schema, "answer", strict=True)
    pieces = await run(make(), request_of([ChatMessage("user", "please json")],
                                          response_format=wanted))  # fmt: skip
    assert "".join(p for p in pieces if isinstance(p, str)) == "".join(JSON_REPLY)
    body = server.requests[0]["body"]
    if name == "openai":
        assert body["response_format"] == {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": schema, "strict": True}}  # fmt: skip
    else:
        config = body["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        assert config["responseSchema"] == {
            "type": "OBJECT",
            "required": ["answer"],
            "properties": {"answer": {"type": "INTEGER"}},
        }


async def test_reasoning_is_kept_apart_from_the_answer(
    chat: tuple[str, FakeServer, Callable[[], Provider]],
) -> None:
    _, _, make = chat
    pieces = await run(make(), request_of([ChatMessage("user", "please think")]))
    thoughts = "".join(p.text for p in pieces if isinstance(p, Reasoning))
    assert thoughts == "".join(THOUGHT)
    assert "".join(p for p in pieces if isinstance(p, str)) == "".join(REPLY)
    assert isinstance(pieces[-1], Usage)
