"""Gemini's `generateContent` shapes: a user's images as `inlineData` parts; an assistant's calls
as `functionCall` parts of a `model` turn and their results as `functionResponse` parts;
`tools` as `functionDeclarations` with a `toolConfig`; structured output as `responseSchema`
with `responseMimeType`. Gemini's schemas are an OpenAPI subset, so JSON schemas are reduced to it
(`$ref`s inlined, `null` alternatives as `nullable`, keywords it lacks left out)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aitasks.providers.base import ChatMessage, ChatRequest, ToolCall

# The schema keywords Gemini's `Schema` takes.
SCHEMA_KEYS = frozenset({
    "type", "format", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "items", "minimum", "maximum", "anyOf", "propertyOrdering", "title",
})  # fmt: skip
MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE", "function": "ANY"}


def schema(value: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON schema as Gemini's OpenAPI subset."""
    root = value if root is None else root
    if "$ref" in value:
        target: Any = root
        for part in str(value["$ref"]).removeprefix("#/").split("/"):
            target = target[part] if part else target
        return schema(target, root)
    out: dict[str, Any] = {}
    kind = value.get("type")
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        kind = others[0] if others else "null"
        if "null" in value["type"]:
            out["nullable"] = True
    options = value.get("anyOf") or value.get("oneOf")
    if options:
        concrete = [o for o in options if o.get("type") != "null"]
        if len(concrete) < len(options):
            out["nullable"] = True
        if len(concrete) == 1:
            return {**schema(concrete[0], root), **out}
        out["anyOf"] = [schema(o, root) for o in concrete]
    for key, item in value.items():
        if key not in SCHEMA_KEYS or key in ("anyOf", "type"):
            continue
        if key == "properties":
            out[key] = {name: schema(sub, root) for name, sub in item.items()}
        elif key == "items":
            out[key] = schema(item, root)
        else:
            out[key] = item
    if kind:
        out["type"] = str(kind).upper()
    return out


def parts(m: ChatMessage, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """A message's parts (`names`: each call id's function, for the results)."""
    if m.role == "tool":
        name = m.name or names.get(m.tool_call_id or "", "")
        return [{"functionResponse": {"name": name, "response": {"content": m.content}}}]
    out: list[dict[str, Any]] = []
    if m.content:
        out.append({"text": m.content})
    out += [
        {"inlineData": {"mimeType": i.media_type, "data": base64.b64encode(i.data).decode()}}
        for i in m.images
        if i.data is not None
    ]
    for call in m.tool_calls:
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError:
            args = {"arguments": call.arguments}
        out.append({"functionCall": {"name": call.name, "args": args}})
    return out or [{"text": ""}]


def contents(chat: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """The conversation without its system messages: assistant turns as `model`, tool results
    as `user` turns, turns of one role in a row merged."""
    names = {c.id: c.name for m in chat for c in m.tool_calls}
    out: list[dict[str, Any]] = []
    for m in chat:
        if m.role == "system":
            continue
        role = "model" if m.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["parts"] += parts(m, names)
        else:
            out.append({"role": role, "parts": parts(m, names)})
    return out


def request_fields(request: ChatRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """Body fields (tools, toolConfig) and generationConfig fields (the response's schema)."""
    body: dict[str, Any] = {}
    config: dict[str, Any] = {}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [
            {"name": t.name, "parameters": schema(t.parameters),
             **({"description": t.description} if t.description else {})}
            for t in request.tools
        ]}]  # fmt: skip
        choice = request.tool_choice
        calling: dict[str, Any] = {"mode": MODES.get(choice.mode, "AUTO")}
        if choice.mode == "function" and choice.name:
            calling["allowedFunctionNames"] = [choice.name]
        body["toolConfig"] = {"functionCallingConfig": calling}
    wanted = request.response_format
    if wanted is not None:
        config["responseMimeType"] = "application/json"
        if wanted.type == "json_schema" and wanted.schema is not None:
            config["responseSchema"] = schema(wanted.schema)
    return body, config


def tool_call(part: Mapping[str, Any], index: int) -> ToolCall:
    """A `functionCall` part as a call (Gemini's own id where it gives one)."""
    call = part["functionCall"]
    arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
    return ToolCall(str(call.get("id") or f"call_{index}_{call['name']}"), call["name"], arguments)
