"""What a Responses API request carries to the model and back, through the official SDK on the
embedded backends and on PostgreSQL + Redis: the sampling parameters and the token limit reach
the task's parameters, `text.format` json_object makes a JSON object, `parallel_tool_calls` and
the rest are echoed on the response, and `reasoning` items sent back from an earlier output are
passed over."""

from __future__ import annotations

import json

import pytest

from aitasks.store.models import Task
from tests.support.keyed_app import MODES, KeyedAppFactory
from tests.support.sdk import sdk_for


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_the_token_limit_and_json_object_reach_the_model(
    app_on: KeyedAppFactory, mode: str
) -> None:
    async with app_on(mode) as app, sdk_for(app, "ada") as sdk:
        made = await sdk.responses.create(
            model="mock-chat", input="a greeting", temperature=0.3, top_p=0.9,
            max_output_tokens=50, parallel_tool_calls=False, user="u-1",
            text={"format": {"type": "json_object"}},
        )  # fmt: skip
        assert made.status == "completed"
        assert list(json.loads(made.output_text)) == ["reply"]  # the mock's JSON object
        assert (made.temperature, made.top_p, made.max_output_tokens) == (0.3, 0.9, 50)
        assert made.parallel_tool_calls is False and made.user == "u-1"
        assert made.text is not None and made.text.format is not None
        assert made.text.format.type == "json_object"
        async with app.db.session() as session:
            task = await session.get(Task, made.id.removeprefix("resp_"))
            assert task is not None
            assert task.params == {
                "temperature": 0.3, "top_p": 0.9, "max_tokens": 50, "user": "u-1",
                "parallel_tool_calls": False, "response_format": {"type": "json_object"},
            }  # fmt: skip
        again = await sdk.responses.retrieve(made.id)
        assert again.model_dump() == made.model_dump()  # the same object, read back


async def test_reasoning_items_sent_back_are_passed_over(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded") as app, sdk_for(app, "ada") as sdk:
        made = await sdk.responses.create(
            model="mock-chat",
            input=[
                {"type": "reasoning", "id": "rs_earlier", "summary": []},
                {"role": "user", "content": "hello"},
            ],
        )
        assert made.status == "completed" and made.output_text.startswith('Mock reply to "hello')
        (sent,) = (await sdk.responses.input_items.list(made.id)).data
        assert sent.type == "message" and sent.role == "user"
