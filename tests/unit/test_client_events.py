"""The terminal client reads a task's event stream: text as it comes, then the task; a stream
that ends with an `error` event (its source failed) is said as such, not as a finished task."""

import pytest

from aitasks.client import Client, ClientError, Event


def follow(*events: Event) -> tuple[list[str], dict[str, object]]:
    pieces: list[str] = []
    task = Client._follow(iter(events), pieces.append, lambda _status: None)
    return pieces, task


def test_text_then_the_finished_task() -> None:
    pieces, task = follow(
        Event("status", {"status": "RUNNING"}),
        Event("delta", {"delta": "Hel"}),
        Event("delta", {"delta": "lo"}),
        Event("done", {"status": "SUCCESS", "result": "Hello"}),
    )
    assert pieces == ["Hel", "lo"] and task["result"] == "Hello"


def test_an_error_event_says_the_stream_was_interrupted() -> None:
    error = {"type": "service_unavailable", "message": "the event log is unavailable"}
    with pytest.raises(ClientError, match="stream interrupted: the event log is unavailable"):
        follow(Event("delta", {"delta": "Hel"}), Event("error", {"error": error}))
