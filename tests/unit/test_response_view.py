"""A task as OpenAI's Response object and its webhook events (pure): every status the SDK parses
into its `Response`, output items from the result (reasoning, message, function calls),
`incomplete` when a provider stopped at the token limit, ids that map back to the task, and the
thin webhook bodies the SDK's `UnwrapWebhookEvent` union reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from openai.types.responses import Response
from openai.types.webhooks import UnwrapWebhookEvent
from pydantic import TypeAdapter

from aitasks.api.openai.response_view import response_object, task_id_of
from aitasks.store.models import Task, TaskStatus
from aitasks.webhooks.openai_events import event_body

TASK_ID = "0123456789abcdef0123456789abcdef"
CALL = {"id": "call_abc", "name": "get_weather", "arguments": '{"city": "Paris"}'}
USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


def task(status: TaskStatus, result: dict[str, Any] | None = None, **fields: Any) -> Task:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    return Task(
        id=TASK_ID, tenant="local", conversation_id="c" * 32, turn=1, kind="chat",
        model="mock-chat", queue="chat", provider="mock", prompt="hello", status=status,
        result=result, usage=USAGE if result else None, created_at=now, finished_at=now,
        response={"instructions": "Be brief.", "metadata": {"k": "v"}, "background": True,
                  "tools": [{"type": "function", "name": "get_weather", "parameters": {}}]},
        **fields,
    )  # fmt: skip


def error_of(error: dict[str, str]) -> dict[str, str]:
    return {"code": "invalid_prompt", "message": f"{error['type']}: {error['message']}"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (TaskStatus.PENDING, "queued"),
        (TaskStatus.RUNNING, "in_progress"),
        (TaskStatus.SUCCESS, "completed"),
        (TaskStatus.FAILED, "failed"),
        (TaskStatus.CANCELLED, "cancelled"),
        (TaskStatus.EXPIRED, "failed"),
    ],
)
def test_every_status_is_one_the_sdk_reads(status: TaskStatus, expected: str) -> None:
    result = {"text": "hi"} if status == TaskStatus.SUCCESS else None
    error = {"type": "provider_bad_request", "message": "no"}
    shown = response_object(task(status, result, error=error))
    # The code is one of OpenAI's; the task's own error type leads the message.
    assert shown["error"] == (error_of(error) if expected == "failed" else None)
    made = Response.model_validate(shown, strict=True)
    assert made.status == expected and made.id == f"resp_{TASK_ID}"
    assert made.background is True and made.instructions == "Be brief."
    assert made.output_text == ("hi" if expected == "completed" else "")


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("provider_bad_request", "invalid_prompt"),
        ("provider_rate_limited", "rate_limit_exceeded"),
        ("provider_timeout", "server_error"),
        ("internal_error", "server_error"),
        (None, "server_error"),
    ],
)
def test_a_failures_code_is_one_of_openais(kind: str | None, code: str) -> None:
    error = {"type": kind, "message": "why"} if kind else None
    made = Response.model_validate(response_object(task(TaskStatus.FAILED, error=error)))
    assert made.error is not None and made.error.code == code
    expected = f"{kind}: why" if kind else "server_error: the response failed"
    assert made.error.message == expected  # the task's own type stays visible


def test_output_items_come_from_the_result() -> None:
    result = {"text": "Let me look.", "reasoning": "thinking", "tool_calls": [CALL]}
    made = Response.model_validate(response_object(task(TaskStatus.SUCCESS, result)))
    assert [item.type for item in made.output] == ["reasoning", "message", "function_call"]
    call = made.output[2]
    assert call.type == "function_call" and call.call_id == "call_abc"
    assert made.output_text == "Let me look."
    assert made.usage is not None and made.usage.total_tokens == 12
    only_call = response_object(task(TaskStatus.SUCCESS, {"text": "", "tool_calls": [CALL]}))
    assert only_call["status"] == "completed"
    assert [item["type"] for item in only_call["output"]] == ["function_call"]


def test_a_reply_stopped_at_the_token_limit_is_incomplete() -> None:
    stopped = task(TaskStatus.SUCCESS, {"text": "Once upon", "finish_reason": "length"})
    made = Response.model_validate(response_object(stopped))
    assert made.status == "incomplete"
    assert made.incomplete_details is not None
    assert made.incomplete_details.reason == "max_output_tokens"
    body = event_body("msg_1", "task.succeeded", stopped)
    assert body is not None and json.loads(body)["type"] == "response.incomplete"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("task.succeeded", "response.completed"),
        ("task.failed", "response.failed"),
        ("task.expired", "response.failed"),
        ("task.cancelled", "response.cancelled"),
    ],
)
def test_webhook_bodies_are_openais_thin_events(event: str, expected: str) -> None:
    body = event_body("msg_abc", event, task(TaskStatus.SUCCESS, {"text": "hi"}))
    assert body is not None
    parsed = TypeAdapter(UnwrapWebhookEvent).validate_json(body)
    assert parsed.type == expected and parsed.id == "evt_abc"
    assert parsed.data.id == f"resp_{TASK_ID}"
    assert event_body("msg_abc", "task.running", task(TaskStatus.RUNNING)) is None


def test_only_ids_this_service_made_name_a_task() -> None:
    assert task_id_of(f"resp_{TASK_ID}") == TASK_ID
    for other in (TASK_ID, "resp_", "resp_nonsense", f"resp_{TASK_ID}0", "resp_" + "G" * 32):
        assert task_id_of(other) is None
