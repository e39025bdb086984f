"""Conversations: list, read, rename or give a system prompt, delete; and their history. Each
caller sees only its tenant's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aitasks import lifecycle
from aitasks.api.auth import CallerDep
from aitasks.api.deps import LinksDep, ServicesDep, SessionDep
from aitasks.api.listing import Page
from aitasks.api.responses import errors
from aitasks.api.schemas import (
    ConversationList,
    ConversationPatch,
    Deletion,
    HistoryView,
)
from aitasks.errors import InvalidRequest
from aitasks.store import conversations as store
from aitasks.views import ConversationView, conversation_view, history_messages

router = APIRouter(prefix="/v1", tags=["conversations"])

MAX_PAGE = 100


@router.get("/conversations", response_model=ConversationList, responses=errors(400))
async def list_conversations(
    session: SessionDep,
    caller: CallerDep,
    after: Annotated[str | None, Query(description="`next_after` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
) -> ConversationList:
    """Conversations, latest activity first."""
    rows = await store.list_conversations(
        session, tenant=caller.tenant, after=after, limit=limit + 1
    )
    page = Page(rows, limit, key=lambda c: c.id)
    return ConversationList(
        data=[conversation_view(c) for c in page.rows],
        has_more=page.has_more,
        next_after=page.next_after,
    )


@router.get(
    "/conversations/{conversation_id}", response_model=ConversationView, responses=errors(404)
)
async def read_conversation(
    conversation_id: str, session: SessionDep, caller: CallerDep
) -> ConversationView:
    conversation = await store.get_conversation(session, conversation_id, tenant=caller.tenant)
    return conversation_view(conversation)


@router.patch(
    "/conversations/{conversation_id}",
    response_model=ConversationView,
    responses=errors(400, 404, 413),
)
async def update_conversation(
    conversation_id: str, body: ConversationPatch, session: SessionDep, caller: CallerDep
) -> ConversationView:
    """Rename it, or set (null: clear) the system prompt its chat turns start with."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidRequest("nothing to change: give title and/or system_prompt")
    updated = await store.update_conversation(
        session, conversation_id, changes, tenant=caller.tenant
    )
    return conversation_view(updated)


@router.delete("/conversations/{conversation_id}", response_model=Deletion, responses=errors(404))
async def delete_conversation(
    conversation_id: str, services: ServicesDep, caller: CallerDep
) -> Deletion:
    """Delete it with its messages, tasks and files; tasks still running are stopped."""
    await lifecycle.delete_conversation(services, caller, conversation_id)
    return Deletion(id=conversation_id)


@router.get(
    "/conversations/{conversation_id}/history",
    response_model=HistoryView,
    # A message's structure (tool calls, reasoning...) shows only where it has some.
    response_model_exclude_unset=True,
    responses=errors(404),
)
async def read_history(
    conversation_id: str, session: SessionDep, caller: CallerDep, links: LinksDep
) -> HistoryView:
    """The conversation's messages in the order of its turns, with their structure: a user's
    images, an assistant's tool calls and reasoning, and each tool result as a `tool` message."""
    messages = await store.conversation_messages(session, conversation_id, tenant=caller.tenant)
    return HistoryView(
        conversation_id=conversation_id,
        messages=[shown for m in messages for shown in history_messages(m, links)],
    )
