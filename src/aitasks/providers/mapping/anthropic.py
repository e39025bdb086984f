"""The Messages API's shapes: system text apart; a user's images as base64 `image` blocks (or
`url` sources, which Anthropic fetches itself); an assistant's calls as `tool_use` blocks and their
results as `tool_result` blocks in the next user message; `tools` with `input_schema` and the
`tool_choice` object."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from aitasks.providers.base import ChatMessage, ChatRequest, ImagePart


def image_block(image: ImagePart) -> dict[str, Any]:
    if image.data is not None:
        data = base64.b64encode(image.data).decode()
        source = {"type": "base64", "media_type": image.media_type, "data": data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": image.url}}


def arguments_of(text: str) -> Any:
    """A call's arguments as the object `tool_use.input` is (text that is not JSON is kept)."""
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {"arguments": text}


def blocks(m: ChatMessage) -> list[dict[str, Any]]:
    """A message's content blocks."""
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
    out: list[dict[str, Any]] = [image_block(i) for i in m.images]
    if m.content:
        out.append({"type": "text", "text": m.content})
    out += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_of(c.arguments)}
        for c in m.tool_calls
    ]
    return out


def messages(chat: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """The conversation without its system messages, tool results as user messages, and messages
    of one role in a row merged (the API wants user and assistant in turn)."""
    out: list[dict[str, Any]] = []
    for m in chat:
        if m.role == "system":
            continue
        role = "user" if m.role == "tool" else m.role
        content = blocks(m)
        if out and out[-1]["role"] == role:
            out[-1]["content"] += content
        else:
            out.append({"role": role, "content": content})
    return out


def request_fields(request: ChatRequest) -> dict[str, Any]:
    """Tools and the tool choice, as Anthropic takes them."""
    if not request.tools:
        return {}
    choice = request.tool_choice
    modes: dict[str, dict[str, Any]] = {
        "auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"},
    }  # fmt: skip
    tool_choice = dict(modes.get(choice.mode) or {"type": "tool", "name": choice.name})
    if not request.parallel_tool_calls and tool_choice["type"] != "none":
        tool_choice["disable_parallel_tool_use"] = True
    tools = [
        {"name": t.name, "input_schema": dict(t.parameters),
         **({"description": t.description} if t.description else {})}
        for t in request.tools
    ]  # fmt: skip
    return {"tools": tools, "tool_choice": tool_choice}
