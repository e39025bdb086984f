"""A conversation that ran a tool loop and received an image, through the official SDK against
real processes (a gateway and a worker on PostgreSQL and Redis): every process is restarted, the
conversation continues (its image read back from file storage, its tool loop given back to the
model as context), and its history reads back in order with its structure."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
from PIL import Image

from aitasks.providers.base import ChatMessage, ImagePart, ToolCall
from aitasks.providers.mock import mock_reply
from tests.support.processes import Process, free_port, wait_until_up
from tests.support.services import upgraded_stack

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@contextmanager
def running(env: dict[str, str], folder: Path) -> Iterator[str]:
    """A gateway and a worker as processes of their own; yields the gateway's URL."""
    port = free_port()
    gateway = Process(["api", "--port", str(port)], env, folder)
    worker = Process(["worker"], env, folder)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", gateway)
        worker.wait_for_log("on queues")
        yield f"http://127.0.0.1:{port}"
    finally:
        gateway.stop()
        worker.stop()


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 20, 160)).save(out, format="PNG")
    return out.getvalue()


def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/openai/v1", api_key="unused", max_retries=0)


def test_a_tool_loop_with_an_image_continues_after_every_process_restarts(
    tmp_path: Path,
) -> None:
    with upgraded_stack(tmp_path, AITASKS_MOCK_LATENCY_MS="20") as env:
        with running(env, tmp_path) as base_url:
            picture = png(40, 24)
            uploaded = httpx.post(
                f"{base_url}/v1/files", files={"file": ("map.png", picture, "image/png")}
            )
            assert uploaded.status_code == 201, uploaded.text
            client = sdk(base_url)
            content: Any = [
                {"type": "text", "text": "What does get_weather say for this place?"},
                {"type": "image_url", "image_url": {"url": uploaded.json()["url"]}},
            ]
            first = client.chat.completions.create(
                model="mock-chat", messages=[{"role": "user", "content": content}], tools=[WEATHER]
            )
            conversation = first.model_extra["conversation_id"]  # type: ignore[index]
            (call,) = first.choices[0].message.tool_calls or []
            second = client.chat.completions.create(
                model="mock-chat",
                messages=[{"role": "tool", "tool_call_id": call.id, "content": "Bergen: rain"}],
                tools=[WEATHER],
                extra_body={"conversation_id": conversation},
            )
            assert "Bergen: rain" in (second.choices[0].message.content or "")
            client.close()

        # Every process is gone; new ones on the same database, Redis and file store.
        with running(env, tmp_path) as base_url:
            client = sdk(base_url)
            third = client.chat.completions.create(
                model="mock-chat",
                messages=[{"role": "user", "content": "And tomorrow?"}],
                tools=[WEATHER],
                extra_body={"conversation_id": conversation},
            )
            client.close()
            reply = third.choices[0].message.content or ""
            # The model was given the whole loop in its structure, the image's bytes among it:
            # the mock's reply is a function of exactly these messages.
            given = [
                ChatMessage("user", content[0]["text"], images=(ImagePart(data=picture),)),
                ChatMessage("assistant", "", tool_calls=(
                    ToolCall(call.id, call.function.name, call.function.arguments),)),
                ChatMessage("tool", "Bergen: rain", tool_call_id=call.id),
                ChatMessage("assistant", second.choices[0].message.content or ""),
                ChatMessage("user", "And tomorrow?"),
            ]  # fmt: skip
            assert reply == mock_reply(given)
            assert "Image 1 is 40x24." in reply
            history = httpx.get(f"{base_url}/v1/conversations/{conversation}/history").json()
    messages = history["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user",
                                             "assistant"]  # fmt: skip
    (image,) = messages[0]["images"]  # served by the new gateway, so its port
    assert image == f"{base_url}/v1/files/{uploaded.json()['id']}"
    assert messages[1]["tool_calls"][0]["id"] == call.id
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2]["tool_call_id"] == call.id and messages[2]["content"] == "Bergen: rain"
    assert messages[3]["content"] == second.choices[0].message.content
    assert messages[5]["content"] == reply
    task_ids = [m["task_id"] for m in messages]
    assert task_ids[0] == task_ids[1] and task_ids[2] == task_ids[3] and task_ids[4] == task_ids[5]
    assert len(set(task_ids)) == 3
