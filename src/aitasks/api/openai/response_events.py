"""A response's stream events, made from what its task's event log says (pure: no I/O).

The events and their `sequence_number`s are a function of the response's content, not of how its
log happened to be cut: `response.created` (0), `response.queued` (1), `response.in_progress` (2),
then each output item in turn (its text in `pieces`, one word or so each, whatever size the log's
deltas were), then the terminal event. So a stream read live from the log and one made up from the
stored task after its log is gone (`ResponseStreamView.finish` on a view fed nothing) number the
same events alike, and a reader that resumes `starting_after` N continues where it was, from any
gateway, whichever way the rest is made.

Items follow `response_view`'s output: the reasoning, the message, then each function call, with
the same ids (`lifecycle/message_items.py`; its conversation's items have them too). A new
attempt that starts after some of an earlier one's items (a retry, a fallback, a worker that
died) starts the items again from `ITEMS_START` (`restarted`): the reader decides what its client
is told. A cancelled response ends in `response.failed` (the SDK has no event for it), its object
saying `cancelled`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aitasks.events.base import DELTA, REASONING, STATUS, TOOL_CALL, Event
from aitasks.lifecycle.message_items import function_call_item, output_text_part, reply_ids
from aitasks.store.models import TaskStatus

# The number the first output item's events start at (after created, queued, in_progress).
ITEMS_START = 3
# One piece of streamed text: up to 16 characters of a word and the spaces after it (a whole
# word, or a long word's part; leading spaces ride with the first).
PIECE = re.compile(r"\s*\S{1,16}\s*|\s+")
TERMINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete"}
# What a response object says before it has an outcome.
UNFINISHED: dict[str, Any] = {
    "output": [], "output_text": "", "usage": None, "error": None, "incomplete_details": None,
    "completed_at": None,
}  # fmt: skip


def pieces(text: str, *, final: bool) -> tuple[list[str], str]:
    """`text` cut into its pieces, and the rest that may still grow (none once `final`): a piece
    is certain once something other than a space follows it."""
    found: list[str] = []
    start = 0
    while start < len(text):
        match = PIECE.match(text, start)
        if match is None or (match.end() == len(text) and not final):
            break
        found.append(match.group())
        start = match.end()
    return found, text[start:]


def message_id(task_id: str) -> str:
    return reply_ids(task_id).message


def reasoning_id(task_id: str) -> str:
    return reply_ids(task_id).reasoning


def error_event(code: str, message: str, sequence_number: int) -> dict[str, Any]:
    """An `error` event. Not one of the response's own events: it carries the number of the last
    event its reader has, the one to resume after."""
    return {
        "type": "error", "code": code, "message": message, "param": None,
        "sequence_number": sequence_number,
    }  # fmt: skip


def current_attempt(events: Iterable[Event]) -> list[Event]:
    """The events without the output of attempts before the last one they name: what a reader
    that starts now needs (the items of a superseded attempt were replaced)."""
    events = list(events)
    attempts = [e.data.get("attempt") for e in events if e.type == STATUS]
    last = next((a for a in reversed(attempts) if a is not None), None)
    kept: list[Event] = []
    attempt = None
    for event in events:
        if event.type == STATUS and event.data.get("attempt") is not None:
            attempt = event.data["attempt"]
        if event.type in (DELTA, REASONING, TOOL_CALL) and attempt != last:
            continue
        kept.append(event)
    return kept


@dataclass(slots=True)
class _Item:
    kind: str  # "reasoning", "message" or "function_call"
    index: int
    id: str
    # The text sent so far, in pieces (joined only when it closes: a long reply has many).
    sent: list[str] = field(default_factory=list)
    held: str = ""  # text received and not yet sent (its last piece may still grow)
    open: bool = True


@dataclass(slots=True)
class ResponseStreamView:
    """The events of one response, fed its task's log events in order (`feed`), then its final
    object (`finish`). Each event comes out with its `sequence_number`."""

    task_id: str
    # The response object as first read: what the created, queued and in-progress events carry
    # (their status set, their outcome emptied).
    snapshot: Mapping[str, Any]
    next_number: int = 0
    phase: str = ""  # "", "queued", "in_progress", "ended"
    attempt: int | None = None
    items: list[_Item] = field(default_factory=list)
    # Set when a new attempt dropped items already made; the reader clears it.
    restarted: bool = False

    def _event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        event = {"type": event_type, **fields, "sequence_number": self.next_number}
        self.next_number += 1
        return event

    def _state(self, status: str) -> dict[str, Any]:
        return {**self.snapshot, **UNFINISHED, "status": status}

    def _begin(self) -> list[dict[str, Any]]:
        if self.phase:
            return []
        self.phase = "queued"
        return [
            self._event("response.created", response=self._state("queued")),
            self._event("response.queued", response=self._state("queued")),
        ]

    def _in_progress(self) -> list[dict[str, Any]]:
        out = self._begin()
        if self.phase == "queued":
            self.phase = "in_progress"
            out.append(self._event("response.in_progress", response=self._state("in_progress")))
        return out

    def start(self) -> list[dict[str, Any]]:
        """The first events, before any of the log's: created and queued."""
        return self._begin()

    def feed(self, event_type: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The events one log event makes (a status, a piece of text or reasoning, a call)."""
        out = self._begin()
        if self.phase == "ended":
            return out
        if event_type == STATUS:
            attempt = data.get("attempt")
            if attempt is not None:
                if self.attempt is not None and attempt != self.attempt and self.items:
                    self.items = []
                    self.next_number = ITEMS_START
                    self.restarted = True
                self.attempt = attempt
            if data.get("status") == TaskStatus.RUNNING:
                out += self._in_progress()
        elif event_type in (DELTA, REASONING):
            out += self._in_progress()
            kind = "message" if event_type == DELTA else "reasoning"
            out += self._text(kind, str(data.get("delta") or ""))
        elif event_type == TOOL_CALL:
            out += self._in_progress()
            out += self._call(data)
        return out

    def finish(self, final: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The last events, from the response's final object: what is still open closed as the
        object has it, the items the log never told of (all of them when it is gone), then
        `response.completed`, `.incomplete` or `.failed` with the object."""
        out = self._in_progress()
        if self.phase == "ended":
            return out
        finals = {str(item.get("id")): item for item in final.get("output") or ()}
        status = str(final.get("status"))
        for item in self.items:
            if item.open:
                out += self._close(item, finals.get(item.id), status)
        made = {item.id for item in self.items}
        for item_id, final_item in finals.items():
            if item_id not in made:
                out += self._whole(final_item, status)
        event_type = TERMINAL_EVENTS.get(status, "response.failed")
        out.append(self._event(event_type, response=dict(final)))
        self.phase = "ended"
        return out

    # Items.

    def _open(self, kind: str, item_id: str, added: dict[str, Any]) -> tuple[_Item, list[Any]]:
        out: list[dict[str, Any]] = []
        for earlier in self.items:
            if earlier.open:
                out += self._close(earlier, None, "completed")
        item = _Item(kind, len(self.items), item_id)
        self.items.append(item)
        out.append(self._event("response.output_item.added", output_index=item.index, item=added))
        if kind != "function_call":
            part = output_text_part("") if kind == "message" else _reasoning_part("")
            out.append(self._event("response.content_part.added", **self._at(item), part=part))
        return item, out

    def _at(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.index, "content_index": 0}

    def _text(self, kind: str, delta: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        item = next((i for i in self.items if i.kind == kind), None)
        if item is None:
            item_id = message_id(self.task_id) if kind == "message" else reasoning_id(self.task_id)
            item, out = self._open(kind, item_id, _in_progress_item(kind, item_id))
        if not item.open:
            return out  # a second stretch of it, after another item: the final object has it
        item.held += delta
        found, item.held = pieces(item.held, final=False)
        return out + self._pieces(item, found)

    def _pieces(self, item: _Item, found: list[str]) -> list[dict[str, Any]]:
        name = "response.output_text.delta" if item.kind == "message" else (
            "response.reasoning_text.delta"
        )  # fmt: skip
        extra: dict[str, Any] = {"logprobs": []} if item.kind == "message" else {}
        out = []
        for piece in found:
            item.sent.append(piece)
            out.append(self._event(name, **self._at(item), delta=piece, **extra))
        return out

    def _close(
        self, item: _Item, final_item: Mapping[str, Any] | None, status: str
    ) -> list[dict[str, Any]]:
        """An open item's last pieces and its done events, as the final object has it when it
        does (else as streamed)."""
        item.open = False
        if item.kind == "function_call":
            return []
        sent = "".join(item.sent)
        text = sent + item.held
        if final_item is not None:
            final_text = "".join(str(p.get("text") or "") for p in final_item.get("content") or ())
            if final_text.startswith(sent):
                text = final_text
        found, _ = pieces(text[len(sent) :], final=True)
        out = self._pieces(item, found)
        item.held = ""
        if item.kind == "message":
            out.append(
                self._event("response.output_text.done", **self._at(item), text=text, logprobs=[])
            )
            part = output_text_part(text)
        else:
            out.append(self._event("response.reasoning_text.done", **self._at(item), text=text))
            part = _reasoning_part(text)
        out.append(self._event("response.content_part.done", **self._at(item), part=part))
        done = dict(final_item) if final_item is not None else _done_item(item, text, status)
        out.append(self._event("response.output_item.done", output_index=item.index, item=done))
        return out

    def _call(self, call: Mapping[str, Any]) -> list[dict[str, Any]]:
        done = function_call_item(call)
        if any(item.id == done["id"] for item in self.items):
            return []
        item, out = self._open(
            "function_call", done["id"], {**done, "arguments": "", "status": "in_progress"}
        )
        item.open = False
        at = {"item_id": item.id, "output_index": item.index}
        arguments = done["arguments"]
        out.append(self._event("response.function_call_arguments.delta", **at, delta=arguments))
        out.append(self._event("response.function_call_arguments.done", **at, arguments=arguments))
        out.append(self._event("response.output_item.done", output_index=item.index, item=done))
        return out

    def _whole(self, final_item: Mapping[str, Any], status: str) -> list[dict[str, Any]]:
        """An item the log never told of, from the final object: opened, all its text, closed."""
        kind = str(final_item.get("type"))
        item_id = str(final_item.get("id"))
        if kind == "function_call":
            return self._call(
                {"id": final_item["call_id"], "name": final_item["name"],
                 "arguments": final_item.get("arguments")}
            )  # fmt: skip
        if kind not in ("message", "reasoning"):
            return []
        item, out = self._open(kind, item_id, _in_progress_item(kind, item_id))
        return out + self._close(item, final_item, status)


def _reasoning_part(text: str) -> dict[str, Any]:
    return {"type": "reasoning_text", "text": text}


def _in_progress_item(kind: str, item_id: str) -> dict[str, Any]:
    if kind == "message":
        return {
            "type": "message", "id": item_id, "status": "in_progress", "role": "assistant",
            "content": [],
        }  # fmt: skip
    return {"type": "reasoning", "id": item_id, "summary": [], "content": [],
            "status": "in_progress"}  # fmt: skip


def _done_item(item: _Item, text: str, status: str) -> dict[str, Any]:
    """An item closed without a final object's (cut short, or its response failed)."""
    item_status = "completed" if status in ("completed", "incomplete") else "incomplete"
    if item.kind == "message":
        return {
            "type": "message", "id": item.id, "status": item_status, "role": "assistant",
            "content": [output_text_part(text)],
        }  # fmt: skip
    return {"type": "reasoning", "id": item.id, "summary": [], "status": item_status,
            "content": [_reasoning_part(text)]}  # fmt: skip
