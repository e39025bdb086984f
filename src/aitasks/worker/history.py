"""A chat task's messages for the model: the client's own context, or the conversation's history
read from the store, fitted to the model's window (`context.py`), with a summary of the turns that
no longer fit when the model names a `summary_model` (`summaries.py`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from aitasks.errors import ProviderError
from aitasks.providers import ChatMessage, Provider
from aitasks.routing import ModelSpec
from aitasks.services import Services
from aitasks.store import conversations as history
from aitasks.store.conversations import ContextHeader
from aitasks.store.models import Message, Task
from aitasks.worker.context import build_context, fit_messages
from aitasks.worker.summaries import summarise

log = logging.getLogger(__name__)

# The worker's client for a model (one per model, kept across tasks).
ProviderFor = Callable[[ModelSpec], Provider]


async def chat_context(
    services: Services,
    task: Task,
    spec: ModelSpec,
    *,
    header: ContextHeader | None,
    provider_for: ProviderFor,
) -> list[ChatMessage]:
    """The messages to send for `task`: the client's own context, or the conversation's history
    (`header` is what the claim already read of it, or None to read it now), then the prompt."""
    if task.context is not None:
        given = [ChatMessage(m["role"], m["content"]) for m in task.context]
        return fit_messages(given, task.prompt, context_window=spec.context_window)
    earlier: Sequence[Message] = []  # a first turn has no history
    if header is None or task.turn > 1:
        # (A first turn with its claim's header opens no session: even an unused one costs a
        # task of its own to close.)
        async with services.db.session() as session:
            earlier = await history.earlier_messages(session, task.conversation_id, task.turn)
            if header is None:
                header = await history.context_header(session, task.conversation_id)
    system, stored, covered = header
    window = spec.context_window
    fitted = build_context(earlier, task.prompt, context_window=window, system=system)
    if not fitted.dropped_through or not spec.summary_model:
        return fitted.messages
    summary, through = await _summary(
        services, task, spec, earlier, fitted.dropped_through, stored, covered, provider_for
    )
    if summary is None:
        return fitted.messages  # no summary to be had: the oldest turns are just left out
    rest = [m for m in earlier if m.turn > through]
    return build_context(
        rest, task.prompt, context_window=window, system=system, summary=summary
    ).messages


async def _summary(
    services: Services,
    task: Task,
    spec: ModelSpec,
    earlier: Sequence[Message],
    dropped_through: int,
    stored: str | None,
    covered: int,
    provider_for: ProviderFor,
) -> tuple[str | None, int]:
    """The conversation's summary covering at least the dropped turns: the stored one, or one
    made now (folding the newly dropped turns into it) and kept for the next turns."""
    if stored is not None and covered >= dropped_through:
        return stored, covered
    assert spec.summary_model is not None
    summary_spec = services.models.resolve(spec.summary_model)
    dropped = [m for m in earlier if covered < m.turn <= dropped_through]
    try:
        summary = await summarise(provider_for(summary_spec), summary_spec, stored, dropped)
    except (ProviderError, TimeoutError) as exc:
        log.warning("task %s: could not summarise early turns: %s", task.id, exc)
        return (stored, covered) if stored is not None else (None, 0)
    async with services.db.session() as session:
        await history.save_summary(session, task.conversation_id, summary, dropped_through)
    return summary, dropped_through
