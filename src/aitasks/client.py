"""A small client of a running gateway, for the terminal's `aitasks chat` and `aitasks image`.

It speaks the seed's API: a submit with `"stream": true` answers with the task's event stream, so a
reply is printed as it is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientError(Exception):
    """The gateway refused the request, or could not be reached; the message says why."""


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    data: dict[str, Any]


def _events(response: httpx.Response) -> Iterator[Event]:
    """Server-Sent Events, parsed as the HTML standard says (comments and ids skipped)."""
    event, data = "message", list[str]()
    for line in response.iter_lines():
        if not line:
            if data:
                yield Event(event, json.loads("\n".join(data)))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


class Client:
    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(30, read=None)
        )

    def close(self) -> None:
        self.http.close()

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[Event]:
        try:
            with self.http.stream("POST", path, json={**body, "stream": True}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_error_message(response))
                yield from _events(response)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach {self.http.base_url}: {exc}") from exc

    def chat(
        self,
        prompt: str,
        *,
        model: str,
        conversation_id: str | None = None,
        on_text: Callable[[str], None] = lambda _: None,
    ) -> dict[str, Any]:
        """Send one turn; `on_text` gets the reply as it streams in. Returns the finished task."""
        body = {"prompt": prompt, "model": model, "conversation_id": conversation_id}
        return self._follow(self._stream("/v1/chat/completions", body), on_text, lambda _: None)

    def image(
        self,
        prompt: str,
        *,
        model: str,
        conversation_id: str | None = None,
        on_status: Callable[[str], None] = lambda _: None,
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Generate images; `on_status` hears each status change. Returns the task and the PNGs."""
        body = {"prompt": prompt, "model": model, "conversation_id": conversation_id}
        task = self._follow(self._stream("/v1/images/generations", body), lambda _: None, on_status)
        return task, [self.http.get(url).raise_for_status().content for url in task["result"]]

    def status(self) -> dict[str, Any]:
        """Queues, lanes, workers alive, the caller's running batches and recent failures, as
        `GET /v1/status` gives them."""
        return self._get("/v1/status")

    def batch(self, batch_id: str) -> dict[str, Any]:
        """One batch and how far it has come, as `GET /v1/batches/{id}` gives it."""
        return self._get(f"/v1/batches/{batch_id}")

    def _get(self, path: str) -> dict[str, Any]:
        try:
            response = self.http.get(path)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach {self.http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise ClientError(_error_message(response))
        answer: dict[str, Any] = response.json()
        return answer

    @staticmethod
    def _follow(
        events: Iterator[Event], on_text: Callable[[str], None], on_status: Callable[[str], None]
    ) -> dict[str, Any]:
        for event in events:
            if event.event == "delta":
                on_text(event.data["delta"])
            elif event.event == "status":
                on_status(event.data["status"])
            elif event.event == "error":
                # The stream's source failed (an outage); the task goes on, and says so.
                raise ClientError(f"stream interrupted: {event.data['error']['message']}")
            elif event.event == "done":
                task = event.data
                if task["status"] != "SUCCESS":
                    error = task.get("error") or {}
                    raise ClientError(f"task {task['status']}: {error.get('message', '')}".strip())
                return task
        raise ClientError("the stream ended before the task finished")


class ReplyLine:
    """One reply written to `out` as it streams in, then ended with a newline of its own and
    flushed before anything else is said: what follows on stderr (which a shell may send to the
    same place, `2>&1`) then starts a line, and a pipe gets one reply a line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = ""  # the last character written

    def write(self, piece: str) -> None:
        if piece:
            self.out.write(piece)
            self.out.flush()
            self.last = piece[-1]

    def end(self, *, finished: bool) -> None:
        """End the reply's line: always once it finished (an empty reply is an empty line), else
        only if text was written (so that a failure's message starts a line of its own)."""
        if (finished or self.last) and self.last != "\n":
            self.out.write("\n")
        self.out.flush()


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
