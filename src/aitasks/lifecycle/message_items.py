"""Stored messages as OpenAI's items: the one mapping behind a response's output, its input
items and a conversation's items.

A message is in the stored context shape (`providers/messages.py`): `role` and `content`, a
user's `images` and (a conversation row's) `tool_results`, a `tool` message (one result, as a
context holds it), an assistant's `reasoning`, `tool_calls` and `files` (generated images). As
items, in order:

- a user, system or developer message is a `message` item (`input_text`, `input_image`), or,
  when it answers tool calls, one `function_call_output` item per result;
- an assistant message is a `reasoning` item (when it kept reasoning), a `message` item
  (`output_text`, generated images as `input_image`; left out when the reply is tool calls
  alone) and one `function_call` item per call.

Ids (`ItemIds`): a task's reply is named by its task, as its response and the response's stream
name it (`rs_<task>`, `msg_<task>`, `fc_<call id>` without its `call_`), so an output item's id
finds the same item in its conversation; any other stored message by its row (`msg_<row>`,
`rs_<row>`, `fc_<row>_<n>`, `fco_<row>_<n>`: `n` the entry's stable number, `numbered`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Item = dict[str, Any]
FileUrl = Callable[[str], str]


def numbered(entries: Sequence[Mapping[str, Any]] | None) -> list[tuple[int, Mapping[str, Any]]]:
    """A row's tool calls or results with each one's stable number (its `n`, else its place)."""
    return [(int(e.get("n", place)), e) for place, e in enumerate(entries or ())]


def call_item_id(call: Mapping[str, Any]) -> str:
    """A task's function call's item id: from its call id, which the stream knows at once."""
    return f"fc_{str(call['id']).removeprefix('call_')}"


@dataclass(frozen=True, slots=True)
class ItemIds:
    """How one message's items are named: `name` after each kind's prefix, its calls by their
    call ids (`by_call`, a task's reply) or by their number."""

    name: str
    by_call: bool = False

    @property
    def message(self) -> str:
        return f"msg_{self.name}"

    @property
    def reasoning(self) -> str:
        return f"rs_{self.name}"

    def call(self, n: int, call: Mapping[str, Any]) -> str:
        return call_item_id(call) if self.by_call else f"fc_{self.name}_{n}"

    def result(self, n: int | None) -> str:
        return f"fco_{self.name}" if n is None else f"fco_{self.name}_{n}"


def reply_ids(task_id: str) -> ItemIds:
    """The ids of a task's reply (its response's output items)."""
    return ItemIds(task_id, by_call=True)


def output_text_part(text: str) -> Item:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(call: Mapping[str, Any], item_id: str | None = None) -> Item:
    """A stored tool call (`{"id", "name", "arguments"}`) as a `function_call` item."""
    return {
        "type": "function_call", "id": item_id or call_item_id(call), "call_id": str(call["id"]),
        "name": str(call["name"]), "arguments": str(call.get("arguments") or "{}"),
        "status": "completed",
    }  # fmt: skip


def reasoning_item(item_id: str, text: str) -> Item:
    return {"type": "reasoning", "id": item_id, "summary": [], "status": "completed",
            "content": [{"type": "reasoning_text", "text": text}]}  # fmt: skip


def _message(item_id: str, role: str, content: list[Item], status: str = "completed") -> Item:
    return {"type": "message", "id": item_id, "role": role, "status": status, "content": content}


def _result(item_id: str, result: Mapping[str, Any]) -> Item:
    return {"type": "function_call_output", "id": item_id,
            "call_id": str(result.get("tool_call_id")), "output": str(result.get("content") or ""),
            "status": "completed"}  # fmt: skip


def _image(stored: Mapping[str, Any], file_url: FileUrl | None) -> Item:
    file_id = stored.get("file_id")
    url = stored.get("url") or (file_url(str(file_id)) if file_id and file_url else None)
    return {"type": "input_image", "detail": "auto", "file_id": file_id, "image_url": url}


def message_items(
    message: Mapping[str, Any],
    ids: ItemIds,
    file_url: FileUrl | None = None,
    *,
    status: str = "completed",
) -> list[Item]:
    """One stored message as its items, in order (`status`: an assistant message item's)."""
    role = str(message.get("role"))
    text = str(message.get("content") or "")
    if role == "tool":
        return [_result(ids.result(None), message)]
    results = message.get("tool_results")
    if role != "assistant" and results:
        return [_result(ids.result(n), r) for n, r in numbered(results)]
    if role != "assistant":
        content = [{"type": "input_text", "text": text}] if text else []
        content += [_image(i, file_url) for i in message.get("images") or ()]
        return [_message(ids.message, role, content)]
    items: list[Item] = []
    if message.get("reasoning"):
        items.append(reasoning_item(ids.reasoning, str(message["reasoning"])))
    calls = numbered(message.get("tool_calls"))
    files = message.get("files") or ()
    if text or files or not calls:
        content = [output_text_part(text)] if text or not files else []
        content += [_image({"file_id": f}, file_url) for f in files]
        items.append(_message(ids.message, "assistant", content, status))
    items += [function_call_item(c, ids.call(n, c)) for n, c in calls]
    return items
