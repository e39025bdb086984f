"""The Responses API's request, and its input items as Chat Completions messages.

A response's input is turned into the chat path's own request (`ChatCompletionRequest`), so the
same code checks it, limits it and makes its `ChatTurn` (`tools.chat_turn`): messages with
`input_text` / `input_image` parts, `function_call` items (an assistant's calls) and
`function_call_output` items (tool results). `reasoning` items (what a client sends back of an
earlier output) are passed over; any other item type is a 400 naming it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aitasks.api.openai.wire import (
    ChatCompletionRequest,
    ChatMessageIn,
    ContentPart,
    FunctionCallIn,
    ImageURL,
    ServiceTier,
    ToolCallIn,
)
from aitasks.api.tool_shapes import (
    FunctionIn,
    FunctionName,
    JsonSchemaIn,
    NamedToolChoice,
    ResponseFormatIn,
    ToolIn,
)
from aitasks.errors import InvalidRequest

ROLES = ("user", "system", "developer", "assistant")
# Items a client may send back from an earlier output that carry nothing the model needs again.
PASSED_OVER = frozenset({"reasoning"})


class TextFormat(BaseModel):
    """`text.format`: `{"type": "text"}`, `{"type": "json_object"}` or `{"type":
    "json_schema", "name", "schema", "strict", "description"}`."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: TextFormat | None = None


class ResponseTool(BaseModel):
    """A tool as the Responses API spells it (flat: `{"type": "function", "name", ...}`)."""

    model_config = ConfigDict(extra="allow")

    type: str
    name: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ConversationRef(BaseModel):
    id: str = Field(min_length=1, max_length=64)


class ResponseCreate(BaseModel):
    # Parameters this server does not act on are accepted and ignored, as on the chat path;
    # those it cannot honour (built-in tools, unknown input items) are refused.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    tools: list[ResponseTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    metadata: (
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None
    ) = Field(default=None, max_length=16)
    store: bool | None = None
    stream: bool = False
    background: bool = False
    previous_response_id: str | None = Field(default=None, max_length=64)
    conversation: str | ConversationRef | None = None
    user: str | None = None
    service_tier: ServiceTier | None = None
    # aitasks' own (the SDK's extra_body): where this response's webhooks go, and its deadline
    # to start, in seconds.
    callback_url: str | None = None
    expires_after: float | None = Field(default=None, ge=1, le=7 * 86_400)
    # Refused (`chat_request`): a prompt template stored on OpenAI's side, which this service
    # cannot read; ignoring it would answer a different question.
    prompt: object = None

    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation


def _text_of(content: object, index: int, kinds: tuple[str, ...]) -> list[ContentPart]:
    """A message's content as chat content parts (text and images)."""
    if isinstance(content, str):
        return [ContentPart(type="text", text=content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"input[{index}].content must be a string or a list", param="input")
    parts: list[ContentPart] = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"input[{index}].content[{number}]"
        if kind in kinds and isinstance(part.get("text"), str):
            parts.append(ContentPart(type="text", text=part["text"]))
        elif kind == "input_image" and "input_image" in kinds:
            url = part.get("image_url") or part.get("file_id")
            if not isinstance(url, str):
                raise InvalidRequest(f"{where} needs image_url or file_id", param="input")
            parts.append(ContentPart(type="image_url", image_url=ImageURL(url=url)))
        else:
            raise InvalidRequest(
                f"{where} has a content part of type {kind!r}; served: {', '.join(kinds)}",
                param="input",
            )
    return parts


def _message(item: dict[str, Any], index: int) -> ChatMessageIn:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"input[{index}].role must be one of {', '.join(ROLES)}, not {role!r}", param="input"
        )
    if role == "assistant":
        kinds: tuple[str, ...] = ("output_text", "input_text", "refusal")
        text = "".join(p.text or "" for p in _text_of(item.get("content"), index, kinds))
        return ChatMessageIn(role="assistant", content=text)
    kinds = ("input_text", "input_image") if role == "user" else ("input_text",)
    return ChatMessageIn(role=role, content=_text_of(item.get("content"), index, kinds))


def _string(item: dict[str, Any], name: str, index: int) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"input[{index}] needs {name} (a string)", param="input")
    return value


def chat_messages(body: ResponseCreate) -> list[ChatMessageIn]:
    """The request's instructions and input as chat messages, in order."""
    messages: list[ChatMessageIn] = []
    if body.instructions:
        messages.append(ChatMessageIn(role="system", content=body.instructions))
    if isinstance(body.input, str):
        return [*messages, ChatMessageIn(role="user", content=body.input)]
    for index, item in enumerate(body.input):
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, index))
        elif kind == "function_call":
            call = ToolCallIn(
                id=_string(item, "call_id", index),
                function=FunctionCallIn(
                    name=_string(item, "name", index), arguments=item.get("arguments") or "{}"
                ),
            )
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                messages.append(ChatMessageIn(role="assistant", content=None, tool_calls=[call]))
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = "".join(p.text or "" for p in _text_of(output, index, ("input_text",)))
            if not isinstance(output, str):
                raise InvalidRequest(f"input[{index}].output must be a string", param="input")
            call_id = _string(item, "call_id", index)
            messages.append(ChatMessageIn(role="tool", tool_call_id=call_id, content=output))
        elif kind not in PASSED_OVER:
            raise InvalidRequest(
                f"input[{index}] is an item of type {kind!r}; served: message, function_call, "
                "function_call_output",
                param="input",
            )
    return messages


def _tools(tools: list[ResponseTool] | None) -> list[ToolIn] | None:
    if tools is None:
        return None
    made = []
    for index, tool in enumerate(tools):
        if tool.type != "function" or not tool.name:
            raise InvalidRequest(
                f"tools[{index}] is of type {tool.type!r}: only function tools are served "
                "(built-in tools such as web_search, file_search, computer_use or "
                "code_interpreter are not)",
                param="tools",
            )
        made.append(ToolIn(type="function", function=FunctionIn(
            name=tool.name, description=tool.description, parameters=tool.parameters,
            strict=tool.strict)))  # fmt: skip
    return made


def _tool_choice(choice: str | dict[str, Any] | None) -> Any:
    if choice is None or isinstance(choice, str):
        if choice not in (None, "auto", "none", "required"):
            raise InvalidRequest(f"tool_choice {choice!r} is not served", param="tool_choice")
        return choice
    if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
        raise InvalidRequest(
            'tool_choice must be auto, none, required or {"type": "function", "name"}: '
            f"{choice.get('type')!r} is not served",
            param="tool_choice",
        )
    return NamedToolChoice(function=FunctionName(name=choice["name"]))


def _response_format(text: TextConfig | None) -> ResponseFormatIn | None:
    wanted = text.format if text is not None else None
    if wanted is None or wanted.type != "json_schema":
        return ResponseFormatIn(type=wanted.type) if wanted is not None else None
    if not wanted.name or wanted.schema_ is None:
        raise InvalidRequest("text.format json_schema needs name and schema", param="text")
    return ResponseFormatIn(
        type="json_schema",
        json_schema=JsonSchemaIn(name=wanted.name, description=wanted.description,
                                 schema=wanted.schema_, strict=wanted.strict),
    )  # fmt: skip


def chat_request(body: ResponseCreate) -> ChatCompletionRequest:
    """The chat path's request for this response (its context before it is added later); a
    part of the input the chat path's shapes refuse (a name too long, arguments not text) is a
    400 naming it."""
    if body.prompt is not None:
        raise InvalidRequest(
            "prompt: prompt templates are not served here; send the prompt's text as input "
            "(and instructions)",
            param="prompt",
        )
    try:
        return _chat_request(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidRequest(f"input: {where}: {first['msg']}", param="input") from None


def _chat_request(body: ResponseCreate) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=body.model,
        messages=chat_messages(body),
        temperature=body.temperature,
        top_p=body.top_p,
        max_completion_tokens=body.max_output_tokens,
        user=body.user,
        tools=_tools(body.tools),
        tool_choice=_tool_choice(body.tool_choice),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.text),
        service_tier=body.service_tier,
        expires_after=body.expires_after,
    )


def echo(body: ResponseCreate) -> dict[str, Any]:
    """What the response object carries back of the request (`Task.response`)."""
    text_format = body.text.format if body.text is not None else None
    return {
        "instructions": body.instructions,
        "metadata": body.metadata or {},
        "store": body.store is not False,
        "background": body.background,
        "previous_response_id": body.previous_response_id,
        "conversation": body.conversation_id(),
        "text_format": text_format.model_dump(by_alias=True, exclude_none=True)
        if text_format is not None
        else None,
        "tools": [t.model_dump(exclude_none=True) for t in body.tools or ()],
        "tool_choice": body.tool_choice,
        "parallel_tool_calls": body.parallel_tool_calls,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_output_tokens": body.max_output_tokens,
        "user": body.user,
    }
