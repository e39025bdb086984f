"""One task's timeline, for the operations page: submitted, queued, each attempt (with its model),
the provider's first token, and the end; with the task's trace id when it was traced.

Built from what is already kept, so it costs the hot path nothing: the task's row (when it was
submitted, first claimed and finished) and its event log (a `status` event at each change, with
the attempt's number, and the reply's pieces as they came). A log keeps the task's current run
(a retry starts it again) for an hour after the task ends; past that, the row alone tells the
story.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aitasks.errors import RedisUnavailable
from aitasks.events.base import DELTA, STATUS, Event, EventLog
from aitasks.store.models import Task, TaskStatus, as_utc
from aitasks.telemetry import LINK_PREFIX

ENDINGS = {
    TaskStatus.SUCCESS: "succeeded",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "cancelled",
    TaskStatus.EXPIRED: "expired",
}


def trace_id_of(trace_context: str | None) -> str | None:
    """The trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`), stored as the
    task's parent or (a batch's task) as the trace its runs link to."""
    parts = (trace_context or "").removeprefix(LINK_PREFIX).split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def _at(moment: datetime | float | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    return as_utc(moment).isoformat()


def _step(what: str, at: datetime | float | None, detail: str = "") -> dict[str, Any]:
    return {"what": what, "at": _at(at), "detail": detail}


def _from_events(task: Task, events: list[Event]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    answered = True  # whether the current attempt's first token was seen
    for event in events:
        at = event.written_at
        if event.type == STATUS:
            status = event.data.get("status")
            if status == TaskStatus.PENDING:
                again = any(s["what"].startswith("attempt") for s in steps)
                steps.append(_step("queued again" if again else "queued", at))
            elif status == TaskStatus.RUNNING:
                number = event.data.get("attempt", "?")
                model = event.data.get("model") or task.model
                steps.append(_step(f"attempt {number}", at, f"model {model}"))
                answered = False
            elif status in ENDINGS:
                detail = (task.error or {}).get("message", "") if status == "FAILED" else ""
                steps.append(_step(ENDINGS[TaskStatus(status)], at, detail))
        elif event.type == DELTA and not answered:
            answered = True
            steps.append(_step("first token", at, "the provider began to answer"))
    return steps


def _from_row(task: Task) -> list[dict[str, Any]]:
    """The story as the row tells it (the event log expired, or cannot be reached)."""
    steps = []
    if task.started_at is not None:
        steps.append(_step("attempt 1", task.started_at, f"model {task.model}"))
    if task.status in ENDINGS and task.finished_at is not None:
        detail = (task.error or {}).get("message", "") if task.status == TaskStatus.FAILED else ""
        steps.append(_step(ENDINGS[TaskStatus(task.status)], task.finished_at, detail))
    return steps


async def task_timeline(events: EventLog, task: Task) -> dict[str, Any]:
    """The task's timeline: its steps in order, each `{"what", "at", "detail"}`, and what the
    row says about it (status, attempts, served model, the trace id)."""
    try:
        logged = await events.read(task.id, after=None, wait_seconds=0)
    except RedisUnavailable:
        logged = []
    steps = [_step("submitted", task.created_at, f"model {task.model}, queue {task.queue}")]
    steps += _from_events(task, logged) or _from_row(task)
    return {
        "task_id": task.id,
        "status": task.status,
        "model": task.model,
        "served_model": task.served_model,
        "provider": task.provider,
        "attempts": task.attempts,
        "worker_id": task.worker_id,
        "error": task.error,
        "trace_id": trace_id_of(task.trace_context),
        # A batch's task: the trace id is the batch request's, which its runs link to.
        "trace_linked": bool(task.trace_context and task.trace_context.startswith(LINK_PREFIX)),
        "from_event_log": bool(logged),
        "steps": steps,
    }
