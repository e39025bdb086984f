"""Logging: JSON lines when the output is not a terminal (for log collectors), plain text when it
is; every line logged while a worker handles a task carries that task's id, model, queue and
attempt, and, with tracing on, the `trace_id` and `span_id` of the span it was logged in (so a
line leads to its trace, and a trace to its lines)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from aitasks import telemetry

# The task the current asyncio task is working on; each worker job sets its own.
_task: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "aitasks_task", default=None
)


@contextmanager
def task_context(**fields: Any) -> Iterator[None]:
    """Tag every log line inside with these fields (task_id, model, queue, attempt)."""
    token = _task.set({**(_task.get() or {}), **fields})
    try:
        yield
    finally:
        _task.reset(token)


def set_attempt(attempt: int) -> None:
    current = _task.get()
    if current is not None:
        current["attempt"] = attempt


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **(_task.get() or {}),
            **telemetry.log_fields(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {**(_task.get() or {}), **telemetry.log_fields()}
        if fields:
            text += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return text


def configure(level: str, style: str = "auto") -> None:
    """Send logs to stderr as JSON or text (`auto`: text on a terminal, JSON elsewhere)."""
    use_json = style == "json" or (style == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every connection at INFO; the CLI says what happened in one line instead.
    logging.getLogger("alembic").setLevel(logging.WARNING)
