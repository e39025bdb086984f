"""Chat Completions' shapes, for any OpenAI-compatible server: messages with `image_url` parts
(a `data:` URL of the bytes, or the remote URL as given), assistant `tool_calls`, `tool` messages;
`tools` as functions, `tool_choice`, `parallel_tool_calls`, `response_format`; and the stream's
`delta.tool_calls` pieces and `reasoning_content` (DeepSeek's, and other servers')."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from aitasks.providers.base import ChatMessage, ChatRequest, ImagePart, ToolCall


def image_url(image: ImagePart) -> str:
    """An image as a URL: its bytes as a `data:` URL, or the remote URL as given."""
    if image.data is not None:
        return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode()}"
    return image.url or ""


def message(m: ChatMessage, *, reasoning: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.images:
        out["content"] = [
            *([{"type": "text", "text": m.content}] if m.content else []),
            *({"type": "image_url", "image_url": {"url": image_url(i)}} for i in m.images),
        ]
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    if reasoning and m.reasoning:
        out["reasoning_content"] = m.reasoning
    return out


def request_fields(request: ChatRequest) -> dict[str, Any]:
    """The tools, tool choice and response format of a request, as body fields."""
    fields: dict[str, Any] = {}
    if request.tools:
        fields["tools"] = [
            {"type": "function", "function": {
                "name": t.name, "parameters": dict(t.parameters),
                **({"description": t.description} if t.description else {})}}
            for t in request.tools
        ]  # fmt: skip
        choice = request.tool_choice
        fields["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "function"
            else choice.mode
        )
        if not request.parallel_tool_calls:
            fields["parallel_tool_calls"] = False
    wanted = request.response_format
    if wanted is not None and wanted.type == "json_schema" and wanted.schema is not None:
        fields["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": wanted.name, "schema": dict(wanted.schema),
                            "strict": wanted.strict},
        }  # fmt: skip
    elif wanted is not None:
        fields["response_format"] = {"type": "json_object"}
    return fields


@dataclass(slots=True)
class ToolCallPieces:
    """Tool calls as a stream gives them, a piece at a time by index, made whole at its end."""

    calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def add(self, index: int, call_id: str | None, name: str | None, arguments: str | None) -> None:
        call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        call["id"] = call_id or call["id"]
        call["name"] += name or ""
        call["arguments"] += arguments or ""

    def whole(self) -> list[ToolCall]:
        return [
            ToolCall(c["id"] or f"call_{index}", c["name"], c["arguments"] or "{}")
            for index, c in sorted(self.calls.items())
        ]
