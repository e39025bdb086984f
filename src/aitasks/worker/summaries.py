"""Summaries of the turns that no longer fit a model's window, so they are condensed, not lost.

A model with a `summary_model` gets, before the turns that fit, a summary of the ones that did not.
The summary is stored on the conversation and reused; when more turns fall out of the window, they
are folded into it (the old summary plus the newly dropped turns make the new one).
"""

from __future__ import annotations

import asyncio
import logging

from aitasks.providers.base import ChatMessage, ChatRequest, Provider
from aitasks.routing import ModelSpec
from aitasks.store.models import Message

log = logging.getLogger(__name__)

INSTRUCTION = (
    "Summarise the conversation below for someone who will continue it. Keep names, facts, "
    "numbers, decisions and open questions; drop pleasantries. Reply with the summary only."
)
# Characters of transcript sent to the summary model, at most: the newest are kept.
TRANSCRIPT_SHARE = 0.5


def summary_request(spec: ModelSpec, previous: str | None, dropped: list[Message]) -> ChatRequest:
    lines = [f"{m.role}: {m.content}" for m in dropped if m.content]
    transcript = "\n".join(lines)
    limit = int(spec.context_window * 4 * TRANSCRIPT_SHARE)  # about four characters a token
    transcript = transcript[-limit:]
    before = f"Summary so far: {previous}\n\n" if previous else ""
    text = f"{INSTRUCTION}\n\n{before}Conversation:\n{transcript}"
    return ChatRequest(spec, [ChatMessage("user", text)])


async def summarise(
    provider: Provider, spec: ModelSpec, previous: str | None, dropped: list[Message]
) -> str:
    """The new summary: the previous one with the dropped turns folded in."""
    pieces = []
    async with asyncio.timeout(spec.timeout_s):
        async for piece in provider.stream_chat(summary_request(spec, previous, dropped)):
            if isinstance(piece, str):
                pieces.append(piece)
    return "".join(pieces).strip()
