"""The Responses API's use cases beyond a chat submit: what a new response continues (an earlier
response, or one of the tenant's conversations), a response's own input as messages, and
deleting one response.

A response is a task whose context is explicit (`Task.context`): its instructions, then what it
continues, then the client's earlier input items; its own input is the turn (the user's message,
or the results of the calls it answers). `Task.response` says how that context is made up
(`instructions`: whether its first message is the instructions, `input_from`: where the client's
own items begin), so the next response in a chain takes the context without the instructions
(they apply to one response, as OpenAI's do), and `input_items` lists only what was sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aitasks.auth.caller import Caller
from aitasks.errors import InvalidRequest, NotFound, ServiceUnavailable
from aitasks.lifecycle.admission import unadmit
from aitasks.lifecycle.chat_input import PendingImage
from aitasks.lifecycle.message_items import FileUrl, Item, ItemIds, message_items
from aitasks.lifecycle.read import read_task
from aitasks.lifecycle.stop import stop_task
from aitasks.services import Services
from aitasks.store import responses as store
from aitasks.store.models import UNFINISHED_STATUSES, Message, Role, Task, TaskStatus

log = logging.getLogger(__name__)

# What a deleted response's stream says it ended as.
DELETED = "DELETED"


class ResponseNotFound(NotFound):
    def __init__(self, response_id: str, *, param: str = "response_id") -> None:
        super().__init__(f"response {response_id!r} not found", param=param)


@dataclass(slots=True)
class Prior:
    """What a new response continues: the conversation it joins (None: a new one) and the
    messages before its own (stored shape, `providers.messages`)."""

    conversation_id: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    # The request's field it comes from, for errors about its messages.
    param: str = "previous_response_id"


async def read_response(
    services: Services, task_id: str | None, response_id: str, *, tenant: str, param: str
) -> Task:
    """The tenant's response (a task made by the Responses API); 404 for anything else."""
    if task_id is None:
        raise ResponseNotFound(response_id, param=param)
    try:
        task = await read_task(services, task_id, tenant=tenant)
    except NotFound:
        raise ResponseNotFound(response_id, param=param) from None
    if task.response is None:
        raise ResponseNotFound(response_id, param=param)
    return task


async def prior_of_response(
    services: Services, caller: Caller, task_id: str | None, response_id: str
) -> Prior:
    """An earlier response's conversation and whole context: what it was given (without its
    instructions), its input and its output."""
    task = await read_response(
        services, task_id, response_id, tenant=caller.tenant, param="previous_response_id"
    )
    if task.status in UNFINISHED_STATUSES:
        raise InvalidRequest(
            f"previous response {response_id!r} has not finished; continue it once it has",
            param="previous_response_id",
        )
    return Prior(task.conversation_id, transcript(task))


def transcript(task: Task) -> list[dict[str, Any]]:
    """A response's context without its instructions, its input, then its reply."""
    skip = 1 if (task.response or {}).get("instructions") else 0
    earlier = list(task.context or [])[skip:]
    return [*earlier, *turn_messages(task), *reply_messages(task)]


def turn_messages(task: Task) -> list[dict[str, Any]]:
    """A task's own input: the user's message (with its images), or the tool results."""
    turn_input = task.input or {}
    results = turn_input.get("tool_results")
    if results:
        return [{"role": "tool", **r} for r in results]
    user: dict[str, Any] = {"role": "user", "content": task.prompt}
    if turn_input.get("images"):
        user["images"] = turn_input["images"]
    return [user]


def reply_messages(task: Task) -> list[dict[str, Any]]:
    """A succeeded task's reply as a stored message; none otherwise."""
    if task.status != TaskStatus.SUCCESS or task.result is None:
        return []
    reply: dict[str, Any] = {"role": "assistant", "content": task.result.get("text") or ""}
    for name in ("tool_calls", "reasoning"):
        if task.result.get(name):
            reply[name] = task.result[name]
    return [reply]


def input_items(task: Task, file_url: FileUrl) -> list[Item]:
    """What the client sent with this response (its earlier items, then its turn) as items,
    each message named by the response's task and its place."""
    start = int((task.response or {}).get("input_from") or 0)
    sent = [*list(task.context or [])[start:], *turn_messages(task)]
    return [
        item
        for place, message in enumerate(sent)
        for item in message_items(message, ItemIds(f"{task.id}_{place}", by_call=True), file_url)
    ]


async def prior_of_conversation(services: Services, caller: Caller, conversation_id: str) -> Prior:
    """One of the tenant's conversations as the context of a response that joins it: its system
    prompt and its messages. A conversation with a turn still running is refused, as its reply
    would be missing from the context."""
    async with services.db.session() as session:
        state = await store.conversation_state(session, conversation_id, tenant=caller.tenant)
    if state.busy:
        raise InvalidRequest(
            f"conversation {conversation_id!r} has a response in progress; add to it once that "
            "has finished",
            param="conversation",
        )
    messages: list[dict[str, Any]] = []
    if state.system_prompt:
        messages.append({"role": "system", "content": state.system_prompt})
    for message in state.messages:
        messages.extend(stored_messages(message))
    return Prior(conversation_id, messages, param="conversation")


def stored_messages(message: Message) -> list[dict[str, Any]]:
    """A conversation's message in the stored context shape (`providers.messages`): a turn
    that answers tool calls is one tool message a result."""
    data = message.data or {}
    if message.role == Role.ASSISTANT:
        reply: dict[str, Any] = {"role": "assistant", "content": message.content}
        for name in ("tool_calls", "reasoning"):
            if data.get(name):
                reply[name] = data[name]
        return [reply]
    if data.get("tool_results"):
        return [{"role": "tool", **r} for r in data["tool_results"]]
    if message.role != Role.USER:  # a system or developer message added as an item
        return [{"role": "system", "content": message.content}]
    user: dict[str, Any] = {"role": "user", "content": message.content}
    if data.get("images"):
        user["images"] = data["images"]
    return [user]


def as_context(messages: Sequence[Mapping[str, Any]], param: str) -> list[dict[str, Any]]:
    """Stored messages as a `ChatTurn`'s context: each image a `PendingImage`, checked again as
    the tenant's and then stored as it was."""
    return [
        {**m, "images": [_pending(i, param) for i in m["images"]]} if m.get("images") else dict(m)
        for m in messages
    ]


def _pending(image: Mapping[str, Any], param: str) -> PendingImage:
    if image.get("file_id"):
        return PendingImage(param, file_id=str(image["file_id"]), stored=dict(image))
    return PendingImage(param, url=str(image.get("url")), stored=dict(image))


async def delete_response(services: Services, caller: Caller, task: Task) -> None:
    """Delete a response: its task with its messages and files, and the conversation it
    started when nothing else is left in it (a conversation it was asked to join stays). An
    unfinished one's worker is told to stop, and its key's slot freed."""
    joined = (task.response or {}).get("conversation")
    async with services.db.session() as session:
        deleted = await store.delete_task(
            session, task.id, tenant=caller.tenant, drop_empty_conversation=not joined
        )
    if task.status in UNFINISHED_STATUSES:
        try:
            await stop_task(services, task.id, DELETED)
        except ServiceUnavailable as exc:
            log.warning("task %s: delete not announced: %s", task.id, exc.message)
        await unadmit(services, caller, [task.id], refund=False)
    try:
        await services.storage.delete(deleted.file_keys)
    except ServiceUnavailable as exc:
        log.warning("response %s: files not removed from the store: %s", task.id, exc)
