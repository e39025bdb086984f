"""A small Server-Sent Events reader for the tests, written from the HTML spec's parsing rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SSEvent:
    id: str | None
    event: str
    data: Any
    at: float  # time.monotonic() when it arrived


def read_events(response: httpx.Response) -> Iterator[SSEvent]:
    event_id, event, data = None, "message", []
    for line in response.iter_lines():
        if not line:
            if data:
                yield SSEvent(event_id, event, json.loads("\n".join(data)), time.monotonic())
            event_id, event, data = None, "message", []
        elif line.startswith(":"):
            continue  # a comment: the heartbeat
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id = value
            elif field == "event":
                event = value
            elif field == "data":
                data.append(value)
