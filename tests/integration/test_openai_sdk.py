"""The official `openai` package, unchanged, against `/openai/v1`."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from pydantic import BaseModel

from aitasks.providers.base import ChatMessage
from aitasks.providers.mock import mock_reply


@pytest.fixture
def client(server: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server}/openai/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "What is two plus two?"},
]


def test_chat_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gemini-2.5-flash",
        messages=MESSAGES,
        temperature=0.2,
        max_tokens=50,
        seed=1,  # type: ignore[arg-type]
    )
    assert completion.object == "chat.completion"
    assert completion.model == "gemini-2.5-flash"
    (choice,) = completion.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    # The messages sent are the context the model got.
    expected = mock_reply([ChatMessage(m["role"], m["content"]) for m in MESSAGES])
    assert choice.message.content == expected
    assert "1 earlier turn " in expected
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_streamed_chat_joins_to_the_plain_reply(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="mock-chat", messages=MESSAGES)  # type: ignore[arg-type]
    chunks = []
    arrivals = []
    stream = client.chat.completions.create(
        model="mock-chat",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        chunks.append(chunk)
        arrivals.append(time.monotonic())
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert arrivals[-1] - arrivals[1] > 0.2  # pieces came over time


def test_a_conversation_can_be_kept_and_continued(client: openai.OpenAI, server: str) -> None:
    first = client.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "Remember me"}]
    )
    conversation = first.model_extra["conversation_id"]  # type: ignore[index]
    second = client.chat.completions.create(
        model="mock-chat",
        messages=[{"role": "user", "content": "Do you?"}],
        extra_body={"conversation_id": conversation},
    )
    assert "1 earlier turn " in (second.choices[0].message.content or "")
    history = httpx.get(f"{server}/v1/conversations/{conversation}/history").json()
    assert [m["content"] for m in history["messages"] if m["role"] == "user"] == [
        "Remember me", "Do you?",
    ]  # fmt: skip


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_images_in_both_formats_are_pngs(client: openai.OpenAI, response_format: str) -> None:
    generated = client.images.generate(
        model="stable-diffusion-3", prompt="a lighthouse", n=2, size="256x256",
        response_format=response_format,  # type: ignore[arg-type]
    )  # fmt: skip
    assert len(generated.data or []) == 2
    for image in generated.data or []:
        if response_format == "url":
            assert image.url is not None
            png = httpx.get(image.url).content
        else:
            assert image.b64_json is not None
            png = base64.b64decode(image.b64_json)
        decoded = Image.open(io.BytesIO(png))
        assert (decoded.format, decoded.size) == ("PNG", (256, 256))


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"gemini-2.5-flash", "deepseek-chat", "stable-diffusion-3"} <= set(ids)
    assert client.models.retrieve("deepseek-chat").owned_by == "openai"
    assert client.models.retrieve("gemini-3-anything").id == "gemini-3-anything"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_errors_take_openais_shape_and_status(client: openai.OpenAI) -> None:
    hello = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-9", messages=hello)  # type: ignore[arg-type]
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model="mock-chat", messages=hello, n=2)  # type: ignore[arg-type]
    assert many.value.param == "n"
    with pytest.raises(openai.BadRequestError) as hosted:
        client.chat.completions.create(
            model="mock-chat",
            messages=hello,  # type: ignore[arg-type]
            tools=[{"type": "web_search"}],  # type: ignore[list-item]
        )
    assert hosted.value.param == "tools" and "only function tools" in hosted.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mock-chat", messages=[])
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "x [fail:fatal]"}]
        )
    assert refused.value.code == "provider_bad_request"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "x [fail:retryable]"}]
        )


TOOLS: Any = [
    {
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
]


def test_tool_calls_plain_and_through_the_stream_helper(client: openai.OpenAI) -> None:
    asked: Any = [{"role": "user", "content": "please lookup tides"}]
    plain = client.chat.completions.create(model="mock-chat", messages=asked, tools=TOOLS)
    (call,) = plain.choices[0].message.tool_calls or []
    assert plain.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, call.function.arguments) == ("lookup", '{"term": "mock"}')
    with client.chat.completions.stream(model="mock-chat", messages=asked, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    (streamed,) = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert (streamed.id, streamed.function.arguments) == (call.id, call.function.arguments)
    answered = client.chat.completions.create(
        model="mock-chat",
        messages=[*asked, plain.choices[0].message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "high at noon"}],
        tools=TOOLS,
    )  # fmt: skip
    assert "high at noon" in (answered.choices[0].message.content or "")


class Answer(BaseModel):
    city: str
    population: int


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "the biggest city"}],
        response_format=Answer,
    )
    assert completion.choices[0].message.parsed == Answer(city="mock", population=1)


def test_image_parts(client: openai.OpenAI) -> None:
    out = io.BytesIO()
    Image.new("RGB", (21, 13), (1, 2, 3)).save(out, format="PNG")
    url = f"data:image/png;base64,{base64.b64encode(out.getvalue()).decode()}"
    reply = client.chat.completions.create(
        model="mock-chat",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "what size?"}, {"type": "image_url", "image_url": {"url": url}}
        ]}],
    )  # fmt: skip
    assert "Image 1 is 21x13." in (reply.choices[0].message.content or "")
