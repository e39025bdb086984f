"""A chat turn's context: the conversation's earlier turns, cut to fit the model's window.

Turns are kept or dropped whole, and a turn that answers tool calls is bound to the turn that made
them (a tool result is never sent without its call, nor a call without its result). Images count
at a fixed estimate; their bytes are read only for what is sent (`history.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import groupby

from aitasks.providers.base import ChatMessage
from aitasks.providers.messages import assistant_message, input_messages
from aitasks.store.models import Message, Role

# Room kept free in the window for the model's reply.
REPLY_RESERVE_FRACTION = 0.25
# How a stored summary of dropped turns is put before the turns that fit.
SUMMARY_PREFIX = "Summary of the earlier part of this conversation: "
# Per-message overhead of the chat format, in tokens.
MESSAGE_OVERHEAD_TOKENS = 4
# What an image is counted as, whatever its size: about what a provider charges for a
# medium-sized picture (OpenAI's 512x512 tiles: 85 + 170 a tile, four tiles).
IMAGE_TOKENS = 765


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate: about four characters a token, as for English with BPE."""
    return MESSAGE_OVERHEAD_TOKENS + (len(text) + 3) // 4


def message_tokens(message: ChatMessage) -> int:
    """A message's estimate: its text, its images at `IMAGE_TOKENS` each, its tool calls' names
    and arguments, and its reasoning when it is sent."""
    extra = sum(len(c.name) + len(c.arguments) for c in message.tool_calls)
    extra += len(message.reasoning or "")
    return estimate_tokens(message.content) + (extra + 3) // 4 + IMAGE_TOKENS * len(message.images)


def _turn_as_chat(messages: Sequence[Message], keep_reasoning: bool = False) -> list[ChatMessage]:
    """One turn's messages as the model reads them: its input (a prompt with its images, or tool
    results), then the reply (with its tool calls); generated images become "[image: <prompt>]"."""
    prompt = next((m.content for m in messages if m.role == Role.USER), "")
    chat: list[ChatMessage] = []
    for message in messages:
        content = message.content
        if message.role == Role.USER:
            chat.extend(input_messages(content, message.data))
            continue
        if message.role != Role.ASSISTANT:
            # A system or developer message added as a conversation item (its own turn).
            chat.append(ChatMessage("system", content))
            continue
        if message.files:
            content = " ".join([f"[image: {prompt}]"] * len(message.files) + [content]).rstrip()
        reply = assistant_message(content, message.data)
        chat.append(reply if keep_reasoning else replace(reply, reasoning=None))
    return chat


def _answered(messages: list[ChatMessage]) -> list[ChatMessage]:
    """The messages with every tool call that no tool message answers, and every tool result
    whose call is not among them, written out as text: providers refuse either (a user who moved
    on without running a call; a conversation begun with a client's own context)."""
    answered = {m.tool_call_id for m in messages if m.role == "tool"}
    made = {c.id for m in messages for c in m.tool_calls}
    out = []
    for message in messages:
        if message.role == "tool" and message.tool_call_id not in made:
            note = f"[result of tool call {message.tool_call_id}]: {message.content}"
            out.append(ChatMessage(Role.USER, note))
            continue
        open_calls = [c for c in message.tool_calls if c.id not in answered]
        if open_calls:
            note = " ".join(f"[called {c.name}({c.arguments}), not run]" for c in open_calls)
            kept = tuple(c for c in message.tool_calls if c.id in answered)
            content = f"{message.content} {note}".strip()
            message = replace(message, content=content, tool_calls=kept)
        out.append(message)
    return out


def _cost(messages: Sequence[ChatMessage]) -> int:
    return sum(message_tokens(m) for m in messages)


@dataclass(frozen=True, slots=True)
class FittedContext:
    messages: list[ChatMessage]
    # The last turn left out to fit the window; 0 when every turn fit.
    dropped_through: int


def _units(history: Sequence[Message], keep_reasoning: bool) -> list[tuple[int, list[ChatMessage]]]:
    """The earlier turns as units kept or dropped together, each with its last turn's number: a
    turn, or a run of turns bound by tool calls (a turn answering tool calls joins the one that
    made them)."""
    units: list[tuple[int, list[ChatMessage]]] = []
    for number, rows in groupby(history, key=lambda m: m.turn):
        chat = _turn_as_chat(list(rows), keep_reasoning)
        if units and chat and chat[0].role == "tool":
            units[-1] = (number, [*units[-1][1], *chat])
        else:
            units.append((number, chat))
    return units


def build_context(
    history: Sequence[Message],
    prompt: str,
    *,
    context_window: int,
    system: str | None = None,
    summary: str | None = None,
    current: Sequence[ChatMessage] | None = None,
    keep_reasoning: bool = False,
) -> FittedContext:
    """The messages to send: the conversation's system prompt and a summary of earlier turns
    (when there are), then whole earlier turns, newest kept first, then the new input (`current`:
    the turn's messages, by default the prompt alone).

    Turns are dropped oldest first, whole, so the model never sees a reply without its question
    nor a tool result without its call. The input itself is always sent, even when it alone
    exceeds the budget, and so is the turn whose tool calls it answers.
    """
    head = [ChatMessage(role="system", content=system)] if system else []
    if summary:
        head.append(ChatMessage(role="system", content=SUMMARY_PREFIX + summary))
    new = list(current) if current is not None else [ChatMessage(role=Role.USER, content=prompt)]
    units = _units(history, keep_reasoning)
    if units and new and new[0].role == "tool":
        new = [*units.pop()[1], *new]  # the calls these results answer
    budget = int(context_window * (1 - REPLY_RESERVE_FRACTION)) - _cost(new) - _cost(head)
    kept: list[list[ChatMessage]] = []
    dropped_through = 0
    for number, unit in reversed(units):
        cost = _cost(unit)
        if cost > budget:
            dropped_through = number
            break
        budget -= cost
        kept.append(unit)
    context = [message for unit in reversed(kept) for message in unit]
    return FittedContext(_answered([*head, *context, *new]), dropped_through)


def fit_messages(
    messages: Sequence[ChatMessage],
    prompt: str,
    *,
    context_window: int,
    current: Sequence[ChatMessage] | None = None,
) -> list[ChatMessage]:
    """A context the client sent (the OpenAI way): its system messages, then as many of the newest
    other messages as fit, then the new input. An assistant message's tool calls and the tool
    messages answering them are kept or dropped together."""
    new = list(current) if current is not None else [ChatMessage(role=Role.USER, content=prompt)]
    system = [m for m in messages if m.role == "system"]
    units: list[list[ChatMessage]] = []
    for message in (m for m in messages if m.role != "system"):
        if units and message.role == "tool":
            units[-1].append(message)
        else:
            units.append([message])
    if units and new and new[0].role == "tool" and units[-1][0].tool_calls:
        new = [*units.pop(), *new]  # the calls these results answer
    budget = int(context_window * (1 - REPLY_RESERVE_FRACTION)) - _cost(new) - _cost(system)
    kept: list[list[ChatMessage]] = []
    for unit in reversed(units):
        budget -= _cost(unit)
        if budget < 0:
            break
        kept.append(unit)
    context = [message for unit in reversed(kept) for message in unit]
    return _answered([*system, *context, *new])
