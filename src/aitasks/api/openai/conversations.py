"""OpenAI's Conversations API, `/openai/v1/conversations[/{id}[/items[/{item_id}]]]`: a view of
the same conversations the seed API and the web page use, the caller's tenant's alone (another
tenant's reads as missing, 404), their ids as they are.

A conversation's items are its stored messages (`lifecycle/conversation_items.py`): the turns of
chat submits, chat completions and responses, and the items added here, which become turns
without a task that every later turn has in its context.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from aitasks import lifecycle
from aitasks.api.auth import CallerDep, authenticate
from aitasks.api.deps import LinksDep, ServicesDep
from aitasks.api.openai.conversations_wire import (
    ConversationCreate,
    ConversationUpdate,
    ItemsCreate,
)
from aitasks.lifecycle import conversation_edits as edits
from aitasks.lifecycle.conversation_items import items_of
from aitasks.lifecycle.message_items import Item
from aitasks.store import conversation_items as store
from aitasks.store.models import Conversation, as_utc

router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)], tags=["conversations"])

MAX_PAGE = 100
# Accepted for the SDK's sake; no extra output is kept to include.
Include = Annotated[list[str] | None, Query()]


def conversation_object(conversation: Conversation) -> dict[str, Any]:
    created = as_utc(conversation.created_at)
    return {
        "id": conversation.id,
        "object": "conversation",
        "created_at": int(created.timestamp()),
        "metadata": conversation.meta or {},
    }


def item_list(items: list[Item], has_more: bool = False) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


@router.post("/conversations")
async def create_conversation(
    body: ConversationCreate, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    conversation, _ = await edits.create_conversation(
        services, caller, body.items or [], body.metadata
    )
    return conversation_object(conversation)


@router.get("/conversations/{conversation_id}")
async def retrieve_conversation(
    conversation_id: str, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    async with services.db.session() as session:
        conversation = await store.owned(session, conversation_id, tenant=caller.tenant)
    return conversation_object(conversation)


@router.post("/conversations/{conversation_id}")
async def update_conversation(
    conversation_id: str, body: ConversationUpdate, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    edits.check_metadata(body.metadata)
    async with services.db.session() as session:
        conversation = await store.set_metadata(
            session, conversation_id, body.metadata, tenant=caller.tenant
        )
    return conversation_object(conversation)


@router.delete("/conversations/{conversation_id}")
async def delete_conversation(
    conversation_id: str, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """As the seed API's delete: its messages, tasks and files go; running tasks are stopped."""
    await lifecycle.delete_conversation(services, caller, conversation_id)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@router.get("/conversations/{conversation_id}/items")
async def list_items(
    conversation_id: str,
    services: ServicesDep,
    caller: CallerDep,
    links: LinksDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    order: Literal["asc", "desc"] = "desc",
    include: Include = None,
) -> dict[str, Any]:
    """A page of its items, newest first unless `order=asc`; `after` is an item's id."""
    page = await edits.list_items(
        services,
        caller,
        conversation_id,
        file_url=links.file,
        after=after,
        limit=limit,
        descending=order == "desc",
    )
    return item_list(page.items, page.has_more)


@router.post("/conversations/{conversation_id}/items")
async def create_items(
    conversation_id: str,
    body: ItemsCreate,
    services: ServicesDep,
    caller: CallerDep,
    links: LinksDep,
    include: Include = None,
) -> dict[str, Any]:
    """Add items as the conversation's next turns: the items added, in order."""
    rows = await edits.add_items(services, caller, conversation_id, body.items)
    return item_list([item for row in rows for item in items_of(row, links.file)])


@router.get("/conversations/{conversation_id}/items/{item_id}")
async def retrieve_item(
    conversation_id: str,
    item_id: str,
    services: ServicesDep,
    caller: CallerDep,
    links: LinksDep,
    include: Include = None,
) -> Item:
    return await edits.find_item(services, caller, conversation_id, item_id, links.file)


@router.delete("/conversations/{conversation_id}/items/{item_id}")
async def delete_item(
    conversation_id: str, item_id: str, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Remove one item; answers the conversation, as OpenAI does."""
    conversation = await edits.delete_item(services, caller, conversation_id, item_id)
    return conversation_object(conversation)
