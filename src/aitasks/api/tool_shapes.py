"""Request shapes of tools, tool choice and structured output, as OpenAI's Chat Completions API
spells them, shared by both surfaces (the seed API takes the same fields on a chat submit); and
their translation into the lifecycle's `ChatTurn` fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aitasks.errors import InvalidRequest


class FunctionIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] | None = Field(
        default=None, description="The arguments' JSON schema (an object schema)."
    )
    strict: bool | None = None


class ToolIn(BaseModel):
    """A tool the model may call: `{"type": "function", "function": {...}}`."""

    type: str = Field(description='"function": the only kind served.')
    function: FunctionIn | None = None


class FunctionName(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionName


ToolChoiceIn = Literal["auto", "none", "required"] | NamedToolChoice


class JsonSchemaIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatIn(BaseModel):
    """`{"type": "text"}`, `{"type": "json_object"}`, or `{"type": "json_schema",
    "json_schema": {"name", "schema", "strict"}}`."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaIn | None = None


def tools_of(tools: list[ToolIn] | None) -> list[dict[str, Any]] | None:
    """The tools as the lifecycle takes them; a tool of another kind than a function (a hosted
    tool such as web search) is refused."""
    if not tools:
        return None
    made = []
    for index, tool in enumerate(tools):
        if tool.type != "function" or tool.function is None:
            raise InvalidRequest(
                f"tools[{index}] is of type {tool.type!r}: only function tools are served "
                "(built-in tools such as web search are not)",
                param="tools",
            )
        function = tool.function
        made.append(
            {
                "name": function.name,
                "description": function.description,
                "parameters": function.parameters or {"type": "object", "properties": {}},
            }
        )
    return made


def tool_choice_of(choice: ToolChoiceIn | None) -> str | dict[str, str] | None:
    if isinstance(choice, NamedToolChoice):
        return {"name": choice.function.name}
    return choice


def response_format_of(wanted: ResponseFormatIn | None) -> dict[str, Any] | None:
    """The structured output asked for, as the lifecycle takes it (None for text)."""
    if wanted is None or wanted.type == "text":
        return None
    if wanted.type == "json_object":
        return {"type": "json_object"}
    spec = wanted.json_schema
    if spec is None or spec.schema_ is None:
        raise InvalidRequest(
            "response_format json_schema needs json_schema.schema", param="response_format"
        )
    return {"type": "json_schema", "name": spec.name, "schema": spec.schema_,
            "strict": bool(spec.strict)}  # fmt: skip
