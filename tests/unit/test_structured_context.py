"""Structured messages in a chat's context: tool calls and their results, images and reasoning
are given back in their structure, counted by the fitter, and never split across its cut."""

from __future__ import annotations

from typing import Any

from aitasks.providers.base import ChatMessage, ImagePart, ToolCall
from aitasks.providers.messages import input_messages
from aitasks.store.models import Message
from aitasks.worker.context import (
    IMAGE_TOKENS,
    build_context,
    estimate_tokens,
    fit_messages,
    message_tokens,
)

CALL = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "mock"}'}
RESULT = {"tool_call_id": "call_1", "content": "sunny"}
IMAGE = {"file_id": "f" * 32, "media_type": "image/png", "width": 4, "height": 3}


def row(turn: int, role: str, content: str, data: dict[str, Any] | None = None) -> Message:
    return Message(turn=turn, role=role, content=content, files=[], data=data)


def tool_loop(first: int, padding: str = "") -> list[Message]:
    """A turn that calls a tool and the turn that answers it."""
    return [
        row(first, "user", f"weather? {padding}"),
        row(first, "assistant", "", {"tool_calls": [CALL], "reasoning": "I should look it up"}),
        row(first + 1, "user", "sunny", {"tool_results": [RESULT]}),
        row(first + 1, "assistant", f"It is sunny. {padding}"),
    ]


def test_a_tool_loop_is_given_back_in_its_structure() -> None:
    context = build_context(tool_loop(1), "thanks", context_window=10_000).messages
    assert [m.role for m in context] == ["user", "assistant", "tool", "assistant", "user"]
    assert context[1].tool_calls == (ToolCall("call_1", "get_weather", '{"city": "mock"}'),)
    assert context[2].tool_call_id == "call_1" and context[2].content == "sunny"
    assert context[1].reasoning is None  # never sent back unless the model asks for it
    kept = build_context(tool_loop(1), "thanks", context_window=10_000, keep_reasoning=True)
    assert kept.messages[1].reasoning == "I should look it up"


def test_a_tool_call_and_its_result_are_dropped_together() -> None:
    long = "x" * 400  # about 100 tokens a message
    history = [*tool_loop(1, long), row(3, "user", f"more {long}"), row(3, "assistant", long)]
    # Room for turn 3 and the answering turn 2, but not for turn 1 as well: both go.
    for window in range(400, 1200, 20):
        fitted = build_context(history, "now", context_window=window)
        roles = [m.role for m in fitted.messages]
        if "tool" in roles:
            assert roles[roles.index("tool") - 1] == "assistant"
            assert fitted.messages[roles.index("tool") - 1].tool_calls
        assert fitted.dropped_through in (0, 2, 3)  # never 1 alone: its result would be cut off
        assert not any(m.tool_calls and m.role == "assistant" for m in fitted.messages) or (
            "tool" in roles
        )


def test_results_as_the_new_input_keep_the_turn_that_called() -> None:
    long = "x" * 4000
    history = [row(1, "user", f"weather? {long}"), row(1, "assistant", "", {"tool_calls": [CALL]})]
    current = input_messages("sunny", {"tool_results": [RESULT]})
    context = build_context(history, "sunny", context_window=100, current=current).messages
    assert [m.role for m in context] == ["user", "assistant", "tool"]


def test_an_image_counts_a_fixed_estimate_and_stays_a_file_reference() -> None:
    asked = row(1, "user", "what is this?", {"images": [IMAGE, IMAGE]})
    history = [asked, row(1, "assistant", "a")]
    context = build_context(history, "and now?", context_window=10_000).messages
    (image, _) = context[0].images
    assert image.file_id == IMAGE["file_id"] and image.data is None  # bytes read later
    assert message_tokens(context[0]) == estimate_tokens("what is this?") + 2 * IMAGE_TOKENS
    # A window too small for the images drops the turn, whole.
    fitted = build_context(history, "and now?", context_window=2 * IMAGE_TOKENS)
    assert fitted.dropped_through == 1 and len(fitted.messages) == 1


def test_an_unanswered_call_is_sent_as_text() -> None:
    history = [row(1, "user", "weather?"), row(1, "assistant", "", {"tool_calls": [CALL]})]
    context = build_context(history, "never mind", context_window=10_000).messages
    assert context[1].tool_calls == ()
    assert "get_weather" in context[1].content


def test_a_clients_context_keeps_calls_with_their_results() -> None:
    calling = ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "f", "{}"),))
    answer = ChatMessage("tool", "42", tool_call_id="c1")
    given = [ChatMessage("user", "x" * 2000), calling, answer, ChatMessage("assistant", "ok")]
    fitted = fit_messages(given, "next", context_window=200)
    assert [m.role for m in fitted] == ["assistant", "tool", "assistant", "user"]
    # Results as the input: the call they answer is always sent with them.
    results = [ChatMessage("tool", "42", tool_call_id="c1")]
    fitted = fit_messages(given[:2], "", context_window=10, current=results)
    assert [m.role for m in fitted] == ["assistant", "tool"]


def test_images_of_the_new_input() -> None:
    (message,) = input_messages("look", {"images": [IMAGE, {"url": "https://x.example/a.png"}]})
    assert message.images == (
        ImagePart("image/png", file_id=IMAGE["file_id"]),
        ImagePart("", url="https://x.example/a.png"),
    )
