"""A conversation's stored messages as OpenAI's conversation items, and items as messages.

A stored turn holds at most one user and one assistant message (`store/models.py`), their
structure in `data` (`providers/messages.py`). A row's items and their ids are those of
`lifecycle/message_items.py`: a task's reply is named by its task (`msg_<task>`, `rs_<task>`,
`fc_<call id>`), as its response's output items are; any other row by the row (`msg_<row>`,
`rs_<row>`, `fc_<row>_<n>`, `fco_<row>_<n>`). A system or developer message added as an item is a
row of that role, a turn of its own. `n` is an entry's place when the row was written, kept as
the entry's `n` once a sibling is deleted, so no id ever moves.

Items added to a conversation become turns (`plan_turns`): a user message, or a run of
`function_call_output` items, opens a turn; an assistant message and the `function_call` items
right after it are the turn's reply (a turn of its own when no input precedes it in the same
request); a system or developer message is a turn alone. A turn made of items has no task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aitasks.config import Settings
from aitasks.errors import InvalidRequest, NotFound
from aitasks.lifecycle.chat_input import PendingImage, pending_image
from aitasks.lifecycle.message_items import (
    FileUrl,
    Item,
    ItemIds,
    message_items,
    numbered,
    reply_ids,
)
from aitasks.providers.messages import render_results
from aitasks.store.models import Message, Role

# The roles a message item may have, and those kept as a row of their own role.
MESSAGE_ROLES = ("user", "assistant", "system", "developer")
INSTRUCTION_ROLES = ("system", "developer")
SERVED_TYPES = ("message", "function_call", "function_call_output")
TASK_ID_CHARS = 32


class ItemNotFound(NotFound):
    def __init__(self, item_id: str) -> None:
        super().__init__(f"item {item_id!r} not found in this conversation", param="item_id")


# --- stored messages -> items ------------------------------------------------------------------


def row_ids(row: Message) -> ItemIds:
    """How a row's items are named: by its task when it is a task's reply, else by the row."""
    if row.role == Role.ASSISTANT and row.task_id:
        return reply_ids(row.task_id)
    return ItemIds(str(row.id))


def items_of(row: Message, file_url: FileUrl) -> list[Item]:
    """One stored message as its items, in order."""
    message = {**(row.data or {}), "role": row.role, "content": row.content, "files": row.files}
    return message_items(message, row_ids(row), file_url)


@dataclass(frozen=True, slots=True)
class ItemRef:
    """Where an item id's message is: its row, the reply of its task, or (a function call named
    by its call id) among the conversation's task replies."""

    row_id: int | None = None
    task_id: str | None = None


def parse_item_id(item_id: str) -> ItemRef:
    """Where to look for an item; an id of no shape ours has is not found (404)."""
    kind, _, rest = item_id.partition("_")
    parts = rest.split("_")
    by_row = all(p.isdigit() and len(p) < 19 for p in parts)
    if kind in ("msg", "rs") and len(parts) == 1:
        if by_row:
            return ItemRef(row_id=int(rest))
        if len(rest) == TASK_ID_CHARS and all(c in "0123456789abcdef" for c in rest):
            return ItemRef(task_id=rest)
    if kind in ("fc", "fco") and len(parts) == 2 and by_row:
        return ItemRef(row_id=int(parts[0]))
    if kind == "fc" and rest and len(rest) <= 200:
        return ItemRef()  # a task's call, by its call id
    raise ItemNotFound(item_id)


def without_item(row: Message, item_id: str) -> dict[str, Any] | None:
    """The row's new columns once its item `item_id` is deleted from it (`content`, `files`,
    `data`), or None when nothing of the row is left to keep (the row goes)."""
    ids = row_ids(row)
    data = dict(row.data or {})
    content, files = row.content, list(row.files or ())
    if item_id == ids.message:
        if row.role != Role.ASSISTANT or not data.get("tool_calls"):
            return None
        content, files = "", []
    elif item_id == ids.reasoning:
        data.pop("reasoning", None)
    else:
        calls = item_id.startswith("fc_")
        key = "tool_calls" if calls else "tool_results"

        def named(n: int, entry: Mapping[str, Any]) -> str:
            return ids.call(n, entry) if calls else ids.result(n)

        kept = [{**e, "n": n} for n, e in numbered(data.get(key)) if named(n, e) != item_id]
        if kept:
            data[key] = kept
        else:
            data.pop(key, None)
        if not calls:
            if not kept:
                return None
            content = render_results(kept)
    kept_any = content or files or data.get("tool_calls") or data.get("reasoning")
    if row.role == Role.ASSISTANT and not kept_any:
        return None
    return {"content": content, "files": files, "data": data or None}


# --- items -> stored messages ------------------------------------------------------------------


@dataclass(slots=True)
class NewRow:
    """A message to store: its turn within the request (from 1), role, text and structure."""

    turn: int
    role: str
    content: str
    data: dict[str, Any] | None = None
    images: list[PendingImage] = field(default_factory=list)


def _text_of(parts: object, allowed: tuple[str, ...], param: str) -> tuple[str, list[Item]]:
    """A content's text (its text parts joined by blank lines) and its other parts."""
    if isinstance(parts, str):
        return parts, []
    if not isinstance(parts, list):
        raise InvalidRequest(f"{param} must be a string or a list of content parts", param=param)
    texts, others = [], []
    for index, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise InvalidRequest(
                f"{param}[{index}] has type {kind!r}; served here: {', '.join(allowed)}",
                param=f"{param}[{index}]",
            )
        if kind in ("input_text", "output_text"):
            if not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{param}[{index}] needs text", param=f"{param}[{index}]")
            texts.append(part["text"])
        else:
            others.append(part)
    return "\n\n".join(texts), others


def _string(item: Mapping[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (key != "arguments" and not value):
        raise InvalidRequest(f"{param}.{key} must be a non-empty string", param=f"{param}.{key}")
    return value


def _check_size(text: str, settings: Settings, param: str) -> str:
    if len(text) > settings.max_prompt_chars:
        raise InvalidRequest(
            f"{param} is {len(text)} characters; the limit is {settings.max_prompt_chars} "
            "(AITASKS_MAX_PROMPT_CHARS)",
            param=param,
        )
    return text


def _output_of(item: Mapping[str, Any], settings: Settings, param: str) -> str:
    output = item.get("output")
    if isinstance(output, list):
        output, _ = _text_of(output, ("input_text", "output_text"), f"{param}.output")
    if not isinstance(output, str):
        raise InvalidRequest(f"{param}.output must be a string", param=f"{param}.output")
    return _check_size(output, settings, f"{param}.output")


def plan_turns(items: Sequence[object], settings: Settings, param: str = "items") -> list[NewRow]:
    """The rows (and their turns) that `items` make, every item checked first: a 400 naming
    the first that is not served or not well formed."""
    rows: list[NewRow] = []
    # The turn open for a reply: its input row and its reply row so far.
    turn = 0
    has_input = has_reply = False

    def new_turn() -> None:
        nonlocal turn, has_input, has_reply
        turn, has_input, has_reply = turn + 1, False, False

    for index, item in enumerate(items):
        at = f"{param}[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{at} must be an object", param=at)
        kind = item.get("type", "message" if "role" in item else None)
        if kind not in SERVED_TYPES:
            raise InvalidRequest(
                f"{at} has type {kind!r}; served here: {', '.join(SERVED_TYPES)}", param=at
            )
        if kind == "function_call_output":
            result = {"tool_call_id": _string(item, "call_id", at)}
            result["content"] = _output_of(item, settings, at)
            last = rows[-1] if rows else None
            if (
                last is not None
                and has_input
                and not has_reply
                and last.data
                and ("tool_results" in last.data)
            ):
                last.data["tool_results"].append(result)
                last.content = render_results(last.data["tool_results"])
                continue
            new_turn()
            rows.append(
                NewRow(turn, Role.USER, render_results([result]), {"tool_results": [result]})
            )
            has_input = True
            continue
        if kind == "function_call":
            call = {
                "id": _string(item, "call_id", at),
                "name": _string(item, "name", at),
                "arguments": _check_size(_string(item, "arguments", at), settings, at),
            }
            if not has_reply:
                if not has_input:
                    new_turn()
                rows.append(NewRow(turn, Role.ASSISTANT, "", {}))
                has_reply = True
            reply = rows[-1]
            reply.data = reply.data or {}
            calls = reply.data.setdefault("tool_calls", [])
            if any(c["id"] == call["id"] for c in calls):
                raise InvalidRequest(f"{at}: call_id {call['id']!r} repeats", param=at)
            calls.append(call)
            continue
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise InvalidRequest(
                f"{at}.role is {role!r}; served: {', '.join(MESSAGE_ROLES)}", param=f"{at}.role"
            )
        if role == "assistant":
            text, _ = _text_of(item.get("content"), ("output_text", "input_text"), f"{at}.content")
            if has_reply or not has_input:
                new_turn()
            rows.append(NewRow(turn, Role.ASSISTANT, _check_size(text, settings, at)))
            has_reply = True
            continue
        allowed = ("input_text", "input_image") if role == "user" else ("input_text",)
        text, parts = _text_of(item.get("content"), allowed, f"{at}.content")
        images = [_pending(part, settings, f"{at}.content") for part in parts]
        if not text.strip() and not images:
            raise InvalidRequest(f"{at} has no content", param=f"{at}.content")
        new_turn()
        rows.append(NewRow(turn, str(role), _check_size(text, settings, at), images=images))
        has_input = role == "user"
        if role != "user":
            has_reply = True  # a system or developer message is a turn alone
    return rows


def _pending(part: Mapping[str, Any], settings: Settings, param: str) -> PendingImage:
    ref = part.get("image_url") or part.get("file_id")
    if not isinstance(ref, str) or not ref:
        raise InvalidRequest(f"{param}: an input_image needs image_url or file_id", param=param)
    return pending_image(ref, settings, param)
