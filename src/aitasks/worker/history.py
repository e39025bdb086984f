"""A chat task's messages for the model: the client's own context, or the conversation's history
read from the store, fitted to the model's window (`context.py`), with a summary of the turns that
no longer fit when the model names a `summary_model` (`summaries.py`)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from aitasks.errors import ProviderError
from aitasks.files import file_key
from aitasks.providers import ChatMessage, Provider
from aitasks.providers.messages import context_message, input_messages
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
    current = input_messages(task.prompt, task.input)
    keep_reasoning = spec.reasoning_in_context
    if task.context is not None:
        given = [context_message(m) for m in task.context]
        if not keep_reasoning:
            given = [replace(m, reasoning=None) for m in given]
        sent = fit_messages(given, task.prompt, context_window=spec.context_window, current=current)
        return await with_image_bytes(services, sent)
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
    if not spec.summary_model:
        fitted = build_context(
            earlier,
            task.prompt,
            context_window=window,
            system=system,
            current=current,
            keep_reasoning=keep_reasoning,
        )
        return await with_image_bytes(services, fitted.messages)
    summary_model = spec.summary_model

    async def summarise_with_model(previous: str | None, turns: list[Message]) -> str:
        summary_spec = services.models.resolve(summary_model)
        return await summarise(provider_for(summary_spec), summary_spec, previous, turns)

    messages, made = await summarised_context(
        earlier,
        task.prompt,
        context_window=window,
        system=system,
        stored=Summary(stored, covered) if stored is not None else None,
        summarise=summarise_with_model,
        current=current,
        keep_reasoning=keep_reasoning,
    )
    if made is not None:
        async with services.db.session() as session:
            await history.save_summary(session, task.conversation_id, made.text, made.through)
    return await with_image_bytes(services, messages)


async def with_image_bytes(services: Services, messages: list[ChatMessage]) -> list[ChatMessage]:
    """The messages with the bytes of each image that is one of this service's files, read from
    file storage (only for what is sent, once the context is fitted). A remote image stays a URL:
    the worker never fetches what a tenant pointed at."""
    loaded = []
    for message in messages:
        if any(i.file_id and i.data is None for i in message.images):
            images = []
            for image in message.images:
                if image.file_id and image.data is None:
                    data = await services.storage.get(file_key(image.file_id))
                    image = replace(image, data=data)
                images.append(image)
            message = replace(message, images=tuple(images))
        loaded.append(message)
    return loaded


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary of a conversation's turns 1 to `through`."""

    text: str
    through: int


# Makes the summary that folds `turns` into the `previous` one (None: there is none yet).
Summariser = Callable[[str | None, list[Message]], Awaitable[str]]


async def summarised_context(
    earlier: Sequence[Message],
    prompt: str,
    *,
    context_window: int,
    system: str | None,
    stored: Summary | None,
    summarise: Summariser,
    current: Sequence[ChatMessage] | None = None,
    keep_reasoning: bool = False,
) -> tuple[list[ChatMessage], Summary | None]:
    """The messages to send (as `build_context`, with a summary of the turns that do not fit),
    and the newest summary made for them, to keep, if one was made.

    Every earlier turn is either sent whole or covered by the summary sent before them. Which
    turns fit is only known once the summary's own size is counted, and a summary that covers
    more turns has another size; so: fit the turns after the summary with it in the window;
    fold whatever that leaves out into the summary; fit again, until nothing is left out. Each
    round covers more turns, so it ends (at the latest when the summary covers them all). When
    no summary can be had, the turns that do not fit are left out (and the failure logged).
    """
    fit = functools.partial(
        build_context,
        context_window=context_window,
        system=system,
        current=current,
        keep_reasoning=keep_reasoning,
    )
    fitted = fit(earlier, prompt)
    if not fitted.dropped_through:
        return fitted.messages, None
    summary, made = stored, None
    needed = fitted.dropped_through  # the turns 1..needed must be in the summary
    while True:
        if summary is None or summary.through < needed:
            covered = summary.through if summary is not None else 0
            dropped = [m for m in earlier if covered < m.turn <= needed]
            try:
                text = await summarise(summary.text if summary is not None else None, dropped)
            except (ProviderError, TimeoutError) as exc:
                log.warning("could not summarise early turns: %s", exc)
                break
            summary = made = Summary(text, needed)
        rest = [m for m in earlier if m.turn > summary.through]
        fitted = fit(rest, prompt, summary=summary.text)
        if not fitted.dropped_through:
            return fitted.messages, made
        needed = fitted.dropped_through
    if summary is None:
        return fit(earlier, prompt).messages, None
    rest = [m for m in earlier if m.turn > summary.through]
    return fit(rest, prompt, summary=summary.text).messages, made
