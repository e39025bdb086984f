"""A chat task's request for its provider, and the check of the reply it got.

The task's `params` carry the sampling settings, the tools (`tools`, `tool_choice`,
`parallel_tool_calls`) and the structured output asked for (`response_format`), in the shapes
`lifecycle/chat_input.py` stores. A format the provider serves natively goes to it as it is; for one
that does not, the model is told in a system message what to answer, and its reply is validated
here: a reply that does not validate fails the attempt as retryable (`InvalidModelOutput`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema

from aitasks.errors import InvalidModelOutput
from aitasks.providers.base import (
    ChatMessage,
    ChatRequest,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
)
from aitasks.providers.messages import stored_call
from aitasks.routing import ModelSpec

JSON_OBJECT_INSTRUCTION = "Answer with a single JSON object and nothing else."
JSON_SCHEMA_INSTRUCTION = (
    "Answer with a single JSON value, and nothing else, that is valid against this JSON schema: "
)


def response_format(params: Mapping[str, Any]) -> ResponseFormat | None:
    """The structured output the task asks for, if any."""
    raw = params.get("response_format")
    if not raw or raw.get("type") not in ("json_object", "json_schema"):
        return None
    return ResponseFormat(
        type=raw["type"],
        schema=raw.get("schema"),
        name=raw.get("name") or "response",
        strict=bool(raw.get("strict")),
    )


def tool_choice(params: Mapping[str, Any]) -> ToolChoice:
    choice = params.get("tool_choice") or "auto"
    if isinstance(choice, Mapping):
        return ToolChoice("function", str(choice["name"]))
    return ToolChoice(str(choice))


def chat_request(
    spec: ModelSpec, messages: Sequence[ChatMessage], attempt: int, params: Mapping[str, Any]
) -> ChatRequest:
    """The request for the provider that serves `spec`."""
    tools = tuple(
        Tool(t["name"], t.get("parameters") or {"type": "object"}, t.get("description"))
        for t in params.get("tools") or ()
    )
    wanted = response_format(params)
    native = wanted is not None and spec.native(wanted.type)
    if wanted is not None and not native:
        messages = _instructed(messages, wanted)
    return ChatRequest(
        spec,
        messages,
        attempt=attempt,
        params=params,
        tools=tools,
        tool_choice=tool_choice(params),
        parallel_tool_calls=params.get("parallel_tool_calls", True) is not False,
        response_format=wanted if native else None,
    )


def _instructed(messages: Sequence[ChatMessage], wanted: ResponseFormat) -> list[ChatMessage]:
    """The messages with the format's instruction after their leading system messages."""
    if wanted.type == "json_schema" and wanted.schema is not None:
        text = JSON_SCHEMA_INSTRUCTION + json.dumps(wanted.schema, ensure_ascii=False)
    else:
        text = JSON_OBJECT_INSTRUCTION
    head = 0
    while head < len(messages) and messages[head].role == "system":
        head += 1
    return [*messages[:head], ChatMessage("system", text), *messages[head:]]


def check_reply(request: ChatRequest, text: str, calls: Sequence[ToolCall]) -> str:
    """The reply's text to keep; `InvalidModelOutput` when a reply in text is not the structured
    output the task asks for (a reply that calls tools is not the answer yet, and is not checked).
    Structured output is kept without a Markdown fence around it."""
    wanted = response_format(request.params)
    if wanted is None or calls:
        return text
    text = _unfenced(text)
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidModelOutput("the reply is not JSON, as response_format asks") from None
    if wanted.type == "json_object" or wanted.schema is None:
        if not isinstance(value, dict):
            raise InvalidModelOutput("the reply is not a JSON object, as response_format asks")
        return text
    errors = list(
        jsonschema.validators.validator_for(wanted.schema)(wanted.schema).iter_errors(value)
    )
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "the top"
        raise InvalidModelOutput(
            f"the reply does not match the schema {wanted.name!r}: at {where}: "
            f"{errors[0].message[:200]}"
        )
    return text


def _unfenced(text: str) -> str:
    """The text without a Markdown code fence around it (what instructed models often add)."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        stripped = stripped[3:-3]
        return (stripped[4:] if stripped.startswith("json") else stripped).strip()
    return stripped


def reply_data(calls: Sequence[ToolCall], reasoning: str) -> dict[str, object] | None:
    """What a reply carries beyond its text, as it is stored (None for plain text)."""
    data: dict[str, object] = {}
    if calls:
        data["tool_calls"] = [stored_call(c) for c in calls]
    if reasoning:
        data["reasoning"] = reasoning
    return data or None
