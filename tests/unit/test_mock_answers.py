"""The mock's deterministic answers: values filled from a JSON schema, which tool it calls."""

from __future__ import annotations

import jsonschema
from pydantic import BaseModel

from aitasks.providers.base import ChatMessage, ChatRequest, Tool, ToolChoice
from aitasks.providers.mock_answers import answer, sample
from aitasks.routing import ModelTable


class Mood(BaseModel):
    happy: bool
    level: int


class Diary(BaseModel):
    title: str
    mood: Mood
    note: str | None
    tags: list[str]


def test_a_sample_is_valid_against_its_schema() -> None:
    schema = Diary.model_json_schema()  # with $defs and $ref, anyOf for the optional field
    value = sample(schema)
    jsonschema.validate(value, schema)
    expected = {"happy": True, "level": 1}
    assert value == {"title": "mock", "mood": expected, "note": "mock", "tags": []}
    assert sample({"enum": [7, "x"]}) == 7 and sample({"const": "c"}) == "c"
    assert sample({"type": ["null", "integer"]}) == 1
    assert sample({"type": "object", "properties": {"a": {"type": "string"}}}) == {}


def test_which_tool_it_calls() -> None:
    spec = ModelTable.load(environ={}).resolve("mock-chat")
    tools = (Tool("first", {"type": "object"}), Tool("second", {"type": "object"}))

    def called(text: str, choice: ToolChoice) -> str | None:
        reply = answer(ChatRequest(spec, [ChatMessage("user", text)], tools=tools,
                                   tool_choice=choice))  # fmt: skip
        return reply.call.name if reply.call else None

    assert called("use second", ToolChoice()) == "second"
    assert called("hello", ToolChoice()) is None
    assert called("hello", ToolChoice("required")) == "first"
    assert called("use second", ToolChoice("function", "first")) == "first"
    assert called("use second", ToolChoice("none")) is None
