"""The mapping between stored messages and conversation items: a turn's items in order (input,
then the reply's reasoning, message and calls), ids that stay when a sibling is deleted, and how
added items group into turns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aitasks.config import Settings
from aitasks.errors import InvalidRequest, NotFound
from aitasks.lifecycle.conversation_items import (
    ItemRef,
    items_of,
    parse_item_id,
    plan_turns,
    without_item,
)
from aitasks.store.models import Message
from tests.support.embedded import make_settings


def link(file_id: str) -> str:
    return f"http://testserver/v1/files/{file_id}"


def row(
    row_id: int, role: str, content: str, data: Any = None, files: Any = (), task: Any = None
) -> Message:
    return Message(
        id=row_id, conversation_id="c", turn=1, role=role, content=content, data=data,
        files=list(files), task_id=task,
    )  # fmt: skip


CALLS = [{"id": "a", "name": "f", "arguments": "{}"}, {"id": "b", "name": "g", "arguments": "{}"}]


def test_a_reply_is_reasoning_then_message_then_calls() -> None:
    reply = row(7, "assistant", "Let me look.", {"reasoning": "hmm", "tool_calls": CALLS})
    items = items_of(reply, link)
    assert [(i["type"], i["id"]) for i in items] == [
        ("reasoning", "rs_7"), ("message", "msg_7"), ("function_call", "fc_7_0"),
        ("function_call", "fc_7_1"),
    ]  # fmt: skip
    assert items[0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    assert items[1]["content"][0] == {
        "type": "output_text", "text": "Let me look.", "annotations": [], "logprobs": [],
    }  # fmt: skip
    calls_only = row(8, "assistant", "", {"tool_calls": CALLS[:1]})
    assert [i["id"] for i in items_of(calls_only, link)] == ["fc_8_0"]
    image_turn = row(9, "assistant", "", None, files=["f1"])
    (message,) = items_of(image_turn, link)
    assert message["content"] == [
        {"type": "input_image", "detail": "auto", "file_id": "f1", "image_url": link("f1")}
    ]


def test_a_user_message_or_its_tool_results() -> None:
    images = {"images": [{"file_id": "f1", "media_type": "image/png"}, {"url": "https://x/y.png"}]}
    (message,) = items_of(row(3, "user", "look", images), link)
    assert [p["type"] for p in message["content"]] == ["input_text", "input_image", "input_image"]
    assert [p["image_url"] for p in message["content"][1:]] == [link("f1"), "https://x/y.png"]
    results = {"tool_results": [{"tool_call_id": "a", "content": "1"},
                                {"tool_call_id": "b", "content": "2"}]}  # fmt: skip
    items = items_of(row(4, "user", "1\n2", results), link)
    assert [(i["id"], i["call_id"], i["output"]) for i in items] == [
        ("fco_4_0", "a", "1"), ("fco_4_1", "b", "2"),
    ]  # fmt: skip


def test_deleting_an_entry_keeps_the_others_ids() -> None:
    reply = row(7, "assistant", "Let me look.", {"tool_calls": [*CALLS, {**CALLS[0], "id": "c"}]})
    changed = without_item(reply, "fc_7_1")
    assert changed is not None
    reply.data = changed["data"]
    assert [i["id"] for i in items_of(reply, link)] == ["msg_7", "fc_7_0", "fc_7_2"]
    changed = without_item(reply, "msg_7")  # the text goes, the calls stay
    assert changed is not None and changed["content"] == ""
    reply.content, reply.data = changed["content"], changed["data"]
    assert [i["id"] for i in items_of(reply, link)] == ["fc_7_0", "fc_7_2"]
    reply.data = without_item(reply, "fc_7_0")["data"]  # type: ignore[index]
    assert without_item(reply, "fc_7_2") is None  # nothing left: the row goes
    plain = row(5, "assistant", "hi", {"reasoning": "r"})
    assert without_item(plain, "msg_5") is None
    assert without_item(row(6, "user", "q"), "msg_6") is None


TASK = "0123456789abcdef0123456789abcdef"


def test_a_tasks_reply_is_named_as_its_responses_output() -> None:
    calls = [{"id": "call_a1", "name": "f", "arguments": "{}"}, {"id": "b2", "name": "g"}]
    reply = row(7, "assistant", "Let me look.", {"reasoning": "r", "tool_calls": calls}, task=TASK)
    assert [i["id"] for i in items_of(reply, link)] == [
        f"rs_{TASK}", f"msg_{TASK}", "fc_a1", "fc_b2",
    ]  # fmt: skip
    assert [parse_item_id(i) for i in (f"msg_{TASK}", f"rs_{TASK}")] == [
        ItemRef(task_id=TASK), ItemRef(task_id=TASK),
    ]  # fmt: skip
    assert parse_item_id("fc_a1") == ItemRef()  # looked for among the tasks' replies
    assert parse_item_id("fc_7_1") == ItemRef(row_id=7)
    changed = without_item(reply, "fc_a1")  # the other call keeps its id
    assert changed is not None
    reply.data = changed["data"]
    assert [i["id"] for i in items_of(reply, link)][-1:] == ["fc_b2"]
    # The task's input stays named by its row.
    (question,) = items_of(row(6, "user", "q", task=TASK), link)
    assert question["id"] == "msg_6"


@pytest.mark.parametrize(
    "item_id", ["msg_", "msg_x", "fc_", "fco_1", "fco_1_2_3", "zz_1", "msg_1_2"]
)
def test_ids_of_no_shape_of_ours_are_not_found(item_id: str) -> None:
    with pytest.raises(NotFound):
        parse_item_id(item_id)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def test_items_group_into_turns(settings: Settings) -> None:
    rows = plan_turns(
        [
            {"role": "system", "content": "rules"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "q1"},
            {"role": "user", "content": [{"type": "input_text", "text": "q2"},
                                         {"type": "input_text", "text": "more"}]},
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": "1"},
            {"type": "function_call_output", "call_id": "b", "output": "2"},
            {"role": "assistant", "content": "done"},
            {"type": "function_call_output", "call_id": "c", "output": "3"},
        ],
        settings,
    )  # fmt: skip
    assert [(r.turn, r.role, r.content) for r in rows] == [
        (1, "system", "rules"), (2, "assistant", "hello"), (3, "user", "q1"),
        (4, "user", "q2\n\nmore"), (4, "assistant", ""), (5, "user", "1\n2"),
        (5, "assistant", "done"), (6, "user", "3"),
    ]  # fmt: skip
    assert [c["id"] for c in rows[4].data["tool_calls"]] == ["a", "b"]  # type: ignore[index]
    assert [r["tool_call_id"] for r in rows[5].data["tool_results"]] == ["a", "b"]  # type: ignore[index]


@pytest.mark.parametrize(
    "item",
    [
        {"type": "reasoning", "summary": []},
        {"role": "critic", "content": "x"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "system", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]},
        {"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"},
        "text",
    ],
)
def test_items_not_served_are_refused(settings: Settings, item: Any) -> None:
    with pytest.raises(InvalidRequest):
        plan_turns([item], settings)
