"""A chat turn's context: the conversation's earlier turns, cut to fit the model's window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from aitasks.providers.base import ChatMessage
from aitasks.store.models import Message, Role

# Room kept free in the window for the model's reply.
REPLY_RESERVE_FRACTION = 0.25
# How a stored summary of dropped turns is put before the turns that fit.
SUMMARY_PREFIX = "Summary of the earlier part of this conversation: "
# Per-message overhead of the chat format, in tokens.
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate: about four characters a token, as for English with BPE."""
    return MESSAGE_OVERHEAD_TOKENS + (len(text) + 3) // 4


def _turn_as_chat(messages: Sequence[Message]) -> list[ChatMessage]:
    """One turn's messages as the model reads them; generated images become "[image: <prompt>]"."""
    prompt = next((m.content for m in messages if m.role == Role.USER), "")
    chat = []
    for message in messages:
        content = message.content
        if message.role == Role.ASSISTANT and message.files:
            content = " ".join([f"[image: {prompt}]"] * len(message.files) + [content]).rstrip()
        chat.append(ChatMessage(role=message.role, content=content))
    return chat


@dataclass(frozen=True, slots=True)
class FittedContext:
    messages: list[ChatMessage]
    # The last turn left out to fit the window; 0 when every turn fit.
    dropped_through: int


def build_context(
    history: Sequence[Message],
    prompt: str,
    *,
    context_window: int,
    system: str | None = None,
    summary: str | None = None,
) -> FittedContext:
    """The messages to send: the conversation's system prompt and a summary of earlier turns
    (when there are), then whole earlier turns, newest kept first, then the prompt.

    Turns are dropped oldest first, whole, so the model never sees a reply without its question.
    The prompt itself is always sent, even when it alone exceeds the budget.
    """
    head = [ChatMessage(role="system", content=system)] if system else []
    if summary:
        head.append(ChatMessage(role="system", content=SUMMARY_PREFIX + summary))
    budget = int(context_window * (1 - REPLY_RESERVE_FRACTION)) - estimate_tokens(prompt)
    budget -= sum(estimate_tokens(m.content) for m in head)
    turns = [
        (number, _turn_as_chat(list(turn)))
        for number, turn in groupby(history, key=lambda m: m.turn)
    ]
    kept: list[list[ChatMessage]] = []
    dropped_through = 0
    for number, turn in reversed(turns):
        cost = sum(estimate_tokens(m.content) for m in turn)
        if cost > budget:
            dropped_through = number
            break
        budget -= cost
        kept.append(turn)
    context = [message for turn in reversed(kept) for message in turn]
    return FittedContext(
        [*head, *context, ChatMessage(role=Role.USER, content=prompt)], dropped_through
    )


def fit_messages(
    messages: Sequence[ChatMessage], prompt: str, *, context_window: int
) -> list[ChatMessage]:
    """A context the client sent (the OpenAI way): its system messages, then as many of the newest
    other messages as fit, then the prompt."""
    budget = int(context_window * (1 - REPLY_RESERVE_FRACTION)) - estimate_tokens(prompt)
    system = [m for m in messages if m.role == "system"]
    budget -= sum(estimate_tokens(m.content) for m in system)
    kept: list[ChatMessage] = []
    for message in reversed([m for m in messages if m.role != "system"]):
        budget -= estimate_tokens(message.content)
        if budget < 0:
            break
        kept.append(message)
    return [*system, *reversed(kept), ChatMessage(role=Role.USER, content=prompt)]
