"""A task of the Responses API as OpenAI's `Response` object, in the state the task is in now.

A response is a task: its id is `resp_` + the task's id (no table maps one to the other), its
status the task's (`STATUSES`), its `output` items the task's result (reasoning, the message,
its function calls), and what only a response has (instructions, metadata, text format, tools
as sent, ...) is the task's `response` column, echoed back (`lifecycle/responses.py` writes it).
The same object answers create, retrieve, cancel, the stream's `response.*` events and, by id
only, the webhooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aitasks.lifecycle.message_items import message_items, reply_ids
from aitasks.lifecycle.responses import reply_messages
from aitasks.store.models import Task, TaskStatus, as_utc
from aitasks.webhooks.openai_events import LENGTH_STOPS, RESPONSE_PREFIX

# OpenAI's statuses, by the task's.
STATUSES = {
    TaskStatus.PENDING: "queued",
    TaskStatus.RUNNING: "in_progress",
    TaskStatus.SUCCESS: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "cancelled",
    # Not started before its deadline (`expires_after`): it ended without an answer.
    TaskStatus.EXPIRED: "failed",
}


def response_id(task_id: str) -> str:
    return RESPONSE_PREFIX + task_id


def task_id_of(response_id: str) -> str | None:
    """The task a response id names, or None for an id this service never made."""
    task_id = response_id.removeprefix(RESPONSE_PREFIX)
    if task_id == response_id or len(task_id) != 32:
        return None
    if any(c not in "0123456789abcdef" for c in task_id):
        return None
    return task_id


def response_status(task: Task) -> str:
    if task.status == TaskStatus.SUCCESS and incomplete_reason(task) is not None:
        return "incomplete"
    return STATUSES[TaskStatus(task.status)]


def incomplete_reason(task: Task) -> str | None:
    """Why a finished response is incomplete: the provider stopped at `max_output_tokens`."""
    stop = (task.result or {}).get("finish_reason")
    return "max_output_tokens" if stop in LENGTH_STOPS else None


def _unix(task: Task, name: str) -> int | None:
    moment = as_utc(getattr(task, name))
    return int(moment.timestamp()) if moment is not None else None


def usage_of(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The task's token counts in the Responses API's shape, with the details the SDK reads."""
    if not usage:
        return None
    details = usage.get("completion_tokens_details") or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    input_tokens = int(usage.get("prompt_tokens") or 0)
    output_tokens = int(usage.get("completion_tokens") or 0)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": int(prompt_details.get("cached_tokens") or 0),
            "cache_write_tokens": 0,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": int(details.get("reasoning_tokens") or 0)},
        "total_tokens": int(usage.get("total_tokens") or input_tokens + output_tokens),
    }


def output_items(task: Task) -> list[dict[str, Any]]:
    """The response's output, from the task's result: its reasoning, its message, its calls
    (named as its conversation's items are, `lifecycle/message_items.py`)."""
    status = "incomplete" if incomplete_reason(task) else "completed"
    return [
        item
        for reply in reply_messages(task)
        for item in message_items(reply, reply_ids(task.id), status=status)
    ]


# OpenAI's `ResponseError.code` (a fixed set, which the SDK's type lists) for a task's error
# type: a request the provider refused is the prompt's fault, a rate limit is one; anything else
# is the server's. The task's own type leads the message.
ERROR_CODES = {
    "provider_bad_request": "invalid_prompt",
    "invalid_request": "invalid_prompt",
    "limit_exceeded": "invalid_prompt",
    "payload_too_large": "invalid_prompt",
    "provider_rate_limited": "rate_limit_exceeded",
    "rate_limited": "rate_limit_exceeded",
}


def _error(task: Task) -> dict[str, Any] | None:
    if task.status not in (TaskStatus.FAILED, TaskStatus.EXPIRED):
        return None
    error = task.error or {}
    kind = str(error.get("type") or "server_error")
    return {
        "code": ERROR_CODES.get(kind, "server_error"),
        "message": f"{kind}: {error.get('message') or 'the response failed'}",
    }


def response_object(task: Task, *, status: str | None = None) -> dict[str, Any]:
    """The whole `Response` for a task in its current state (`status` overrides its status,
    for the stream's events that tell of a state the task has already left)."""
    echo = task.response or {}
    items = output_items(task) if task.status == TaskStatus.SUCCESS else []
    text = "".join(
        part["text"] for item in items if item["type"] == "message" for part in item["content"]
    )
    reason = incomplete_reason(task) if task.status == TaskStatus.SUCCESS else None
    conversation = echo.get("conversation")
    return {
        "id": response_id(task.id),
        "object": "response",
        "created_at": _unix(task, "created_at"),
        "status": status or response_status(task),
        "background": bool(echo.get("background")),
        "completed_at": _unix(task, "finished_at") if task.status == TaskStatus.SUCCESS else None,
        "error": _error(task),
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": echo.get("instructions"),
        "max_output_tokens": echo.get("max_output_tokens"),
        "metadata": echo.get("metadata") or {},
        "model": task.served_model or task.model,
        "output": items,
        "output_text": text,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True) is not False,
        "previous_response_id": echo.get("previous_response_id"),
        "conversation": {"id": conversation} if conversation else None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": echo.get("store", True) is not False,
        "temperature": echo.get("temperature"),
        "text": {"format": echo.get("text_format") or {"type": "text"}},
        "tool_choice": echo.get("tool_choice") or "auto",
        "tools": echo.get("tools") or [],
        "top_p": echo.get("top_p"),
        "truncation": "disabled",
        "usage": usage_of(task.usage) if task.status == TaskStatus.SUCCESS else None,
        "user": echo.get("user"),
    }
