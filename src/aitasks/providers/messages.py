"""Structured messages as they are stored (JSON, in `tasks.context`, `tasks.input` and
`messages.data`) and as providers take them (`ChatMessage`).

The stored shapes, one for every surface and provider:

- an image: `{"file_id", "media_type", "width", "height"}` (a file of this service: its bytes are
  read by the worker, never fetched from elsewhere) or `{"url"}` (a remote image, passed only to a
  provider that fetches URLs itself);
- a tool call: `{"id", "name", "arguments"}`, the arguments as JSON text;
- a tool result: `{"tool_call_id", "content", "name"}`;
- a turn's input beyond its text (`tasks.input`, and the user message's `data`): `{"images": [...]}`
  or `{"tool_results": [...]}`;
- an assistant message's `data`: `{"tool_calls": [...], "reasoning": str}`, either or both;
- a message of a client's own context (`tasks.context`): `{"role", "content"}` plus, as it has
  them, `images`, `tool_calls`, `tool_call_id`, `name`, `reasoning`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aitasks.providers.base import ChatMessage, ImagePart, ToolCall


def image_part(stored: Mapping[str, Any]) -> ImagePart:
    """A stored image as a provider takes it (a file's bytes are read later, once it is sent)."""
    if stored.get("url"):
        return ImagePart(media_type=str(stored.get("media_type", "")), url=str(stored["url"]))
    return ImagePart(
        media_type=str(stored.get("media_type", "image/png")), file_id=stored["file_id"]
    )


def tool_call(stored: Mapping[str, Any]) -> ToolCall:
    return ToolCall(str(stored["id"]), str(stored["name"]), str(stored.get("arguments") or "{}"))


def stored_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments}


def context_message(stored: Mapping[str, Any]) -> ChatMessage:
    """A message of a client's own context (`tasks.context`)."""
    return ChatMessage(
        role=str(stored["role"]),
        content=str(stored.get("content") or ""),
        images=tuple(image_part(i) for i in stored.get("images") or ()),
        tool_calls=tuple(tool_call(c) for c in stored.get("tool_calls") or ()),
        tool_call_id=stored.get("tool_call_id"),
        name=stored.get("name"),
        reasoning=stored.get("reasoning"),
    )


def input_messages(prompt: str, turn_input: Mapping[str, Any] | None) -> list[ChatMessage]:
    """A turn's new input as messages: one `tool` message per result when it answers tool calls,
    else the user's message with its images."""
    turn_input = turn_input or {}
    results = turn_input.get("tool_results")
    if results:
        return [tool_message(r) for r in results]
    images = tuple(image_part(i) for i in turn_input.get("images") or ())
    return [ChatMessage("user", prompt, images=images)]


def tool_message(result: Mapping[str, Any]) -> ChatMessage:
    return ChatMessage(
        "tool",
        str(result.get("content") or ""),
        tool_call_id=str(result["tool_call_id"]),
        name=result.get("name"),
    )


def assistant_message(content: str, data: Mapping[str, Any] | None) -> ChatMessage:
    """A stored assistant message, its tool calls and reasoning with it."""
    data = data or {}
    return ChatMessage(
        "assistant",
        content,
        tool_calls=tuple(tool_call(c) for c in data.get("tool_calls") or ()),
        reasoning=data.get("reasoning"),
    )


def answers_tools(turn_input: Mapping[str, Any] | None) -> bool:
    """Whether a turn's input is the results of the previous turn's tool calls."""
    return bool((turn_input or {}).get("tool_results"))


def image_count(messages: Iterable[Mapping[str, Any]]) -> int:
    return sum(len(m.get("images") or ()) for m in messages)


def file_ids(images: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ids of this service's files among stored images."""
    return [str(i["file_id"]) for i in images if i.get("file_id")]


def render_results(results: Sequence[Mapping[str, Any]]) -> str:
    """Tool results as one text (a turn's `prompt`: its title, its estimate, logs)."""
    return "\n".join(str(r.get("content") or "") for r in results)
