"""The webhooks of a response (a task made by OpenAI's Responses API), as OpenAI sends them: a thin
body, `{"id", "object": "event", "type", "created_at", "data": {"id"}}`, with OpenAI's event types,
so the SDK's `client.webhooks.unwrap(...)` verifies and parses them; the client fetches the
response itself by its id. Signed like every delivery (Standard Webhooks, the key's secret)."""

from __future__ import annotations

import json
import time

from aitasks.store.models import Task

# A response's id is its task's, so a receiver can retrieve it (`api/openai/response_view.py`).
RESPONSE_PREFIX = "resp_"
# A provider that stopped for its token limit (when the result records why it stopped).
LENGTH_STOPS = frozenset({"length", "max_tokens", "max_output_tokens"})
# OpenAI's event, by the delivery's event.
EVENT_TYPES = {
    "task.succeeded": "response.completed",
    "task.failed": "response.failed",
    "task.expired": "response.failed",
    "task.cancelled": "response.cancelled",
}


def is_response(task: Task) -> bool:
    return task.response is not None


def event_type(event: str, task: Task) -> str | None:
    """OpenAI's type for a delivery's event of a response; None for one it has no type for."""
    kind = EVENT_TYPES.get(event)
    if kind == "response.completed" and (task.result or {}).get("finish_reason") in LENGTH_STOPS:
        return "response.incomplete"
    return kind


def event_body(delivery_id: str, event: str, task: Task) -> str | None:
    """The thin body of a response's delivery (None: an event OpenAI has no type for)."""
    kind = event_type(event, task)
    if kind is None:
        return None
    return json.dumps(
        {
            "id": "evt_" + delivery_id.removeprefix("msg_"),
            "object": "event",
            "type": kind,
            "created_at": int(time.time()),
            "data": {"id": RESPONSE_PREFIX + task.id},
        }
    )
