"""A response's stream events from its task's event log (pure): numbered 0, 1, 2, ... the same
however the log cut the text and whether the log was there at all; every event one the official
SDK parses into its own class; items with the ids of the response object."""

from __future__ import annotations

import random
import typing
from datetime import UTC, datetime
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel

from aitasks.api.openai.response_events import (
    ITEMS_START,
    ResponseStreamView,
    current_attempt,
    pieces,
)
from aitasks.api.openai.response_view import response_object
from aitasks.events.base import DELTA, REASONING, STATUS, TOOL_CALL, Event
from aitasks.store.models import Task, TaskStatus

# The SDK's class for each event type (its union is told apart by `type`).
SDK_EVENTS: dict[str, type[BaseModel]] = {
    typing.get_args(c.model_fields["type"].annotation)[0]: c
    for c in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}
TASK_ID = "0123456789abcdef0123456789abcdef"
TEXT = 'Mock reply to "hello". I was given 0 earlier turns of context (digest 1f2e3d).'
CALL = {"id": "call_abc123", "name": "get_weather", "arguments": '{"city": "Paris"}'}


def task(status: TaskStatus = TaskStatus.SUCCESS, **result: Any) -> Task:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    return Task(
        id=TASK_ID, tenant="local", conversation_id="c" * 32, turn=1, kind="chat",
        model="mock-chat", queue="chat", provider="mock", prompt="hello", status=status,
        result=result or None, usage={"prompt_tokens": 3, "completion_tokens": 9,
                                      "total_tokens": 12},
        error={"type": "provider_bad_request", "message": "no"}
        if status == TaskStatus.FAILED else None,
        response={"background": True}, created_at=now, finished_at=now,
    )  # fmt: skip


def chunked(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 12))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def live(final: Task, log: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """What a reader of the whole log gets: its events fed in order, then the final object."""
    view = ResponseStreamView(TASK_ID, response_object(final))
    out = view.start()
    for event_type, data in log:
        out += view.feed(event_type, data)
    return out + view.finish(response_object(final))


def made_up(final: Task) -> list[dict[str, Any]]:
    """What a reader gets once the log is gone: the stored task alone."""
    return ResponseStreamView(TASK_ID, response_object(final)).finish(response_object(final))


def running(attempt: int = 1) -> tuple[str, dict[str, Any]]:
    return STATUS, {"status": TaskStatus.RUNNING, "attempt": attempt}


def skeleton(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["type"], e["sequence_number"], e.get("delta"), e.get("item_id")) for e in events]


def check_parsed(events: list[dict[str, Any]]) -> None:
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        # Each event is checked field by field against its class, and so is the response
        # object it carries (in the state the event tells of).
        if "response" in event:
            event = {**event, "response": Response.model_validate(event["response"], strict=True)}
        SDK_EVENTS[event["type"]].model_validate(event, strict=True)


@pytest.mark.parametrize(
    "text", [TEXT, "", "   leading spaces", "一二三四五六七八九十" * 5, "x" * 40]
)
def test_pieces_are_the_same_however_the_text_arrives(text: str) -> None:
    whole, rest = pieces(text, final=True)
    assert "".join(whole) == text and rest == ""
    rng = random.Random(7)
    for _ in range(20):
        got: list[str] = []
        held = ""
        for chunk in chunked(text, rng) if len(text) > 1 else [text]:
            found, held = pieces(held + chunk, final=False)
            got += found
        got += pieces(held, final=True)[0]
        assert got == whole
    assert all(len(p.strip()) <= 16 for p in whole)


def test_a_reply_streams_in_order_and_its_deltas_join_to_its_output_text() -> None:
    final = task(text=TEXT)
    log = [(STATUS, {"status": TaskStatus.PENDING}), running()]
    log += [(DELTA, {"delta": c}) for c in chunked(TEXT, random.Random(1))]
    log += [(STATUS, {"status": TaskStatus.SUCCESS})]
    events = live(final, log)
    check_parsed(events)
    kinds = [e["type"] for e in events]
    assert kinds[:ITEMS_START + 2] == [
        "response.created", "response.queued", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
    ]  # fmt: skip
    assert kinds[-4:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert events[0]["response"]["status"] == "queued" and events[0]["response"]["output"] == []
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == TEXT == events[-1]["response"]["output_text"]
    assert len(deltas) == len(TEXT.split())
    done = events[-2]["item"]
    assert done == events[-1]["response"]["output"][0] and done["id"] == deltas[0]["item_id"]


def test_the_numbers_do_not_depend_on_the_logs_pieces_nor_on_the_log_being_there() -> None:
    final = task(text=TEXT, reasoning="First I think. Then I answer.")
    expected = skeleton(made_up(final))
    for seed in range(5):
        rng = random.Random(seed)
        log = [(STATUS, {"status": TaskStatus.PENDING}), running()]
        log += [(REASONING, {"delta": c}) for c in chunked("First I think. Then I answer.", rng)]
        log += [(DELTA, {"delta": c}) for c in chunked(TEXT, rng)]
        events = live(final, log)
        check_parsed(events)
        assert skeleton(events) == expected
    assert {e["item_id"] for e in made_up(final) if "item_id" in e} == {
        item["id"] for item in response_object(final)["output"]
    }


def test_a_function_call_streams_its_arguments_and_ends_completed() -> None:
    final = task(text="", tool_calls=[CALL])
    events = live(final, [running(), (TOOL_CALL, CALL)])
    check_parsed(events)
    assert skeleton(events) == skeleton(made_up(final))
    (added,) = [e for e in events if e["type"] == "response.output_item.added"]
    assert added["item"]["type"] == "function_call" and added["item"]["status"] == "in_progress"
    (delta,) = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    (args_done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert delta["delta"] == args_done["arguments"] == CALL["arguments"]
    assert events[-1]["type"] == "response.completed"
    assert events[-2]["item"] == events[-1]["response"]["output"][0]
    assert events[-2]["item"]["call_id"] == CALL["id"] == added["item"]["call_id"]


def test_text_then_a_call_closes_the_message_before_the_call() -> None:
    final = task(text="Let me look.", tool_calls=[CALL])
    events = live(final, [running(), (DELTA, {"delta": "Let me look."}), (TOOL_CALL, CALL)])
    check_parsed(events)
    assert skeleton(events) == skeleton(made_up(final))
    items = [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"]
    assert items == ["message", "function_call"]


def test_a_failure_after_some_text_closes_it_incomplete_and_ends_failed() -> None:
    final = task(TaskStatus.FAILED)
    events = live(final, [running(), (DELTA, {"delta": "Half a rep"})])
    check_parsed(events)
    (done,) = [e for e in events if e["type"] == "response.output_item.done"]
    assert done["item"]["status"] == "incomplete"
    assert done["item"]["content"][0]["text"] == "Half a rep"
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "invalid_prompt"
    assert events[-1]["response"]["error"]["message"].startswith("provider_bad_request: ")
    assert [e["type"] for e in made_up(final)] == [
        "response.created", "response.queued", "response.in_progress", "response.failed",
    ]  # fmt: skip


def test_a_reply_stopped_at_its_token_limit_ends_incomplete() -> None:
    final = task(text="cut", finish_reason="length")
    events = made_up(final)
    check_parsed(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_cancelled_response_ends_failed_saying_cancelled() -> None:
    events = made_up(task(TaskStatus.CANCELLED))
    check_parsed(events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "cancelled"


def test_text_the_log_lost_at_the_end_comes_from_the_final_object() -> None:
    final = task(text=TEXT)
    events = live(final, [running(), (DELTA, {"delta": TEXT[:20]})])
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == TEXT
    assert skeleton(events) == skeleton(made_up(final))


def test_a_new_attempt_starts_the_items_again() -> None:
    final = task(text=TEXT)
    view = ResponseStreamView(TASK_ID, response_object(final))
    first = view.start() + view.feed(*running(1)) + view.feed(DELTA, {"delta": "Mock reply to "})
    assert first[-1]["sequence_number"] >= ITEMS_START and not view.restarted
    again = view.feed(*running(2))
    assert view.restarted and again == []
    rest = view.feed(DELTA, {"delta": TEXT}) + view.finish(response_object(final))
    assert rest[0]["sequence_number"] == ITEMS_START
    assert skeleton(first[:ITEMS_START] + rest) == skeleton(made_up(final))


def test_a_reader_starting_now_skips_the_output_of_superseded_attempts() -> None:
    log = [
        Event("1", STATUS, {"status": "PENDING"}),
        Event("2", STATUS, {"status": "RUNNING", "attempt": 1}),
        Event("3", DELTA, {"delta": "old "}),
        Event("4", TOOL_CALL, CALL),
        Event("5", STATUS, {"status": "RUNNING", "attempt": 2, "model": "mock-chat"}),
        Event("6", DELTA, {"delta": "new"}),
    ]
    assert [e.id for e in current_attempt(log)] == ["1", "2", "5", "6"]
    assert current_attempt(log[:3]) == log[:3]
