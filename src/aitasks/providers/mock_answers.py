"""What the mock answers beyond plain text, deterministically, so tests and demos need no keys.

- With tools and a user message last, it calls one tool: the one `tool_choice` names, else the
  first tool whose name appears in the user's text, else (with `required`) the first tool; with
  `auto` and no tool named in the text it answers in text, and with `none` it never calls one. The
  call's arguments fill each required parameter of the tool's JSON schema (`sample`).
- After tool messages it answers in text that holds each tool result's content verbatim.
- With `response_format` json_schema it answers JSON valid against the schema, filled the same
  way; with json_object, a JSON object (`{"reply": <its text answer>}`).
- For each image it was sent it names the image's size, `WxH`, in its reply.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from aitasks.providers.base import ChatMessage, ChatRequest, ImagePart, Tool, ToolCall

PROMPT_ECHO_CHARS = 200
# A value for each JSON type, for a parameter without an `enum`.
BY_TYPE: dict[str, Any] = {
    "string": "mock",
    "integer": 1,
    "number": 1.0,
    "boolean": True,
    "array": [],
    "object": {},
    "null": None,
}


@dataclass(frozen=True, slots=True)
class MockAnswer:
    text: str = ""
    call: ToolCall | None = None


def digest(messages: Sequence[ChatMessage]) -> str:
    """A short hash of the messages (their structure too, where they have some)."""
    hasher = hashlib.sha256()
    for message in messages:
        hasher.update(f"{message.role}\x00{message.content}\x00".encode())
        for call in message.tool_calls:
            hasher.update(f"call\x00{call.id}\x00{call.name}\x00{call.arguments}\x00".encode())
        if message.tool_call_id:
            hasher.update(f"result\x00{message.tool_call_id}\x00".encode())
        for image in message.images:
            hasher.update(hashlib.sha256(image.data or (image.url or "").encode()).digest())
    return hasher.hexdigest()[:12]


def echo(text: str) -> str:
    return text if len(text) <= PROMPT_ECHO_CHARS else text[:PROMPT_ECHO_CHARS] + "…"


def text_reply(messages: Sequence[ChatMessage]) -> str:
    """The plain text answer: a pure function of the messages."""
    *earlier, last = messages
    trailing = _trailing_results(messages)
    if trailing:
        earlier = list(messages[: len(messages) - len(trailing)])
        quoted = ", ".join(f'"{m.content}"' for m in trailing)
        opening = f"Mock reply to the tool results {quoted}. "
    else:
        opening = f'Mock reply to "{echo(last.content)}". '
    earlier_turns = sum(1 for m in earlier if m.role == "user")
    reply = (
        f"{opening}"
        f"I was given {earlier_turns} earlier turn{'s' if earlier_turns != 1 else ''} of context "
        f"(context digest {digest(messages)})."
    )
    sizes = [image_size(i) for m in messages for i in m.images]
    for number, size in enumerate(sizes, start=1):
        reply += f" Image {number} is {size}."
    return reply


def _trailing_results(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    trailing: list[ChatMessage] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        trailing.insert(0, message)
    return trailing


def image_size(image: ImagePart) -> str:
    """`WxH` of an image the mock was sent (it reads the bytes, as a model would)."""
    if image.data is None:
        return "unknown (a URL the mock does not fetch)"
    with Image.open(io.BytesIO(image.data)) as opened:
        width, height = opened.size
    return f"{width}x{height}"


def answer(request: ChatRequest) -> MockAnswer:
    """The mock's answer to a request: a tool call, structured output, or text."""
    messages = request.messages
    last = messages[-1]
    if request.tools and last.role == "user":
        tool = _tool_to_call(request, last.content)
        if tool is not None:
            arguments = json.dumps(sample(tool.parameters), ensure_ascii=False)
            call_id = (
                "call_"
                + hashlib.sha256(f"{digest(messages)}:{tool.name}".encode()).hexdigest()[:24]
            )
            return MockAnswer(call=ToolCall(call_id, tool.name, arguments))
    text = text_reply(messages)
    wanted = request.response_format
    if wanted is not None and wanted.type == "json_schema" and wanted.schema is not None:
        return MockAnswer(json.dumps(sample(wanted.schema), ensure_ascii=False))
    if wanted is not None and wanted.type == "json_object":
        return MockAnswer(json.dumps({"reply": text}, ensure_ascii=False))
    return MockAnswer(text)


def _tool_to_call(request: ChatRequest, text: str) -> Tool | None:
    choice = request.tool_choice
    if choice.mode == "none":
        return None
    if choice.mode == "function":
        return next((t for t in request.tools if t.name == choice.name), None)
    named = next((t for t in request.tools if t.name in text), None)
    if named is not None:
        return named
    return request.tools[0] if choice.mode == "required" else None


def sample(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """A value valid against a JSON schema, filled as the mock fills arguments: an object gets each
    required property (and nothing else); a value with an `enum` its first, whatever its type; else
    by type (string "mock", integer 1, number 1.0, boolean true, array [], object {}). `$ref`s to
    the schema's own `$defs` are followed; of `anyOf` / `oneOf` the first is taken."""
    root = schema if root is None else root
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            target = target[part] if part else target
        return sample(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample(schema[key][0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        return {
            name: sample(properties.get(name) or {}, root) for name in schema.get("required") or ()
        }
    if kind in BY_TYPE:
        value = BY_TYPE[kind]
        return list(value) if isinstance(value, list) else value
    return "mock"
