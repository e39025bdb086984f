"""The Conversations API's use cases: a conversation made with items, items added, listed a page
at a time, and deleted. Every item is checked, and its images found or stored, before anything
is written; the turns are written in one transaction (`store/conversation_items.py`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aitasks.auth.caller import Caller
from aitasks.errors import InvalidRequest, LimitExceeded
from aitasks.files import file_key
from aitasks.lifecycle.chat_input import PendingImage, find_image_files
from aitasks.lifecycle.conversation_items import (
    ItemNotFound,
    NewRow,
    items_of,
    parse_item_id,
    plan_turns,
    without_item,
)
from aitasks.lifecycle.message_items import FileUrl, Item
from aitasks.services import Services
from aitasks.store import conversation_items as store
from aitasks.store.models import Conversation, Message, new_id, utcnow
from aitasks.store.submit_batch import TITLE_CHARS

log = logging.getLogger(__name__)

# OpenAI's limits: items in one request, metadata pairs and their sizes.
MAX_ITEMS = 20
MAX_METADATA = 16
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 512


def check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > MAX_METADATA:
        raise InvalidRequest(
            f"metadata has {len(metadata)} pairs; at most {MAX_METADATA}", param="metadata"
        )
    for key, value in metadata.items():
        if len(key) > MAX_KEY_CHARS or len(value) > MAX_VALUE_CHARS:
            raise InvalidRequest(
                f"metadata[{key[:MAX_KEY_CHARS]!r}]: keys are up to {MAX_KEY_CHARS} characters, "
                f"values up to {MAX_VALUE_CHARS}",
                param="metadata",
            )


async def create_conversation(
    services: Services,
    caller: Caller,
    items: Sequence[object],
    metadata: dict[str, str] | None,
) -> tuple[Conversation, list[Message]]:
    """A new conversation of the caller's, with `items` as its first turns."""
    check_metadata(metadata)
    rows = _planned(items, services)
    title = next((r.content for r in rows if r.role == "user" and r.content), None)
    return await _write(
        services, caller, None, rows, metadata=metadata, title=title and title[:TITLE_CHARS]
    )


async def add_items(
    services: Services, caller: Caller, conversation_id: str, items: Sequence[object]
) -> list[Message]:
    """`items` as the caller's conversation's next turns: the messages written."""
    rows = _planned(items, services)
    if not rows:
        raise InvalidRequest("items is empty: give 1 to 20 items", param="items")
    return (await _write(services, caller, conversation_id, rows))[1]


def _planned(items: Sequence[object], services: Services) -> list[NewRow]:
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(
            f"items holds {len(items)} items; at most {MAX_ITEMS} a request", param="items"
        )
    return plan_turns(items, services.settings)


async def _write(
    services: Services,
    caller: Caller,
    conversation_id: str | None,
    rows: list[NewRow],
    **conversation: Any,
) -> tuple[Conversation, list[Message]]:
    images = [i for r in rows for i in r.images]
    await _find_images(services, caller, images)
    new_files = await _store_images(services, caller, images)
    for row in rows:
        if row.images:
            row.data = {**(row.data or {}), "images": [i.stored for i in row.images]}
    stored = [store.StoredRow(r.turn, r.role, r.content, r.data) for r in rows]
    try:
        async with services.db.session() as session:
            owned, ids = await store.add_turns(
                session,
                conversation_id,
                stored,
                tenant=caller.tenant,
                max_turns=services.settings.max_turns,
                files=new_files,
                **conversation,
            )
            return owned, await store.messages_by_id(session, owned.id, ids)
    except BaseException:
        await _forget(services, [f["storage_key"] for f in new_files])
        raise


async def _find_images(services: Services, caller: Caller, images: list[PendingImage]) -> None:
    """Every image named by id is one of the caller's image files; each gets its stored shape."""
    most = services.settings.max_input_images
    if len(images) > most:
        raise LimitExceeded(
            f"the items hold {len(images)} images; the limit is {most} (AITASKS_MAX_INPUT_IMAGES)",
            param=images[most].param,
            limit=most,
        )
    await find_image_files(services, caller.tenant, images)


async def _store_images(
    services: Services, caller: Caller, images: list[PendingImage]
) -> list[dict[str, Any]]:
    """The bytes of each `data:` image into file storage, a file of the caller's that no task
    holds and its conversation's delete removes: the records to write with the turns."""
    records = []
    for image in images:
        if image.data is None or image.decoded is None:
            continue
        file_id = new_id()
        key = file_key(file_id)
        media_type = image.decoded.media_type
        await services.storage.put(key, image.data, content_type=media_type)
        image.stored = {"file_id": file_id, "media_type": media_type,
                        "width": image.decoded.width, "height": image.decoded.height}  # fmt: skip
        records.append(
            {"id": file_id, "task_id": None, "tenant": caller.tenant, "content_type": media_type,
             "size": len(image.data), "storage_key": key, "created_at": utcnow(),
             "purpose": store.ITEM_IMAGE}
        )  # fmt: skip
    return records


@dataclass(frozen=True, slots=True)
class ItemPage:
    items: list[Item]
    has_more: bool


async def list_items(
    services: Services,
    caller: Caller,
    conversation_id: str,
    *,
    file_url: FileUrl,
    after: str | None,
    limit: int,
    descending: bool,
) -> ItemPage:
    """A page of the conversation's items in order (or its reverse), after the item `after`."""
    start: Message | None = None
    if after is not None:
        try:
            start, _ = await _locate(services, caller, conversation_id, after, file_url)
        except ItemNotFound:
            raise InvalidRequest(
                f"after: no item {after!r} in this conversation", param="after"
            ) from None
    async with services.db.session() as session:
        if start is None:
            await store.owned(session, conversation_id, tenant=caller.tenant)
        # Every message is one item or more: `limit` + 1 messages past `start` fill the page
        # and tell whether more follow.
        rows = await store.page_from(
            session, conversation_id, start=start, descending=descending, limit=limit + 2
        )
    items = [item for row in rows for item in _ordered(items_of(row, file_url), descending)]
    if after is not None:
        items = items[[i["id"] for i in items].index(after) + 1 :]
    return ItemPage(items[:limit], len(items) > limit)


def _ordered(items: list[Item], descending: bool) -> list[Item]:
    return items[::-1] if descending else items


async def _locate(
    services: Services, caller: Caller, conversation_id: str, item_id: str, file_url: FileUrl
) -> tuple[Message, Item]:
    """The message that holds the item, and the item (404 when the conversation has none)."""
    ref = parse_item_id(item_id)
    async with services.db.session() as session:
        rows = await store.messages_holding(
            session, conversation_id, tenant=caller.tenant, row_id=ref.row_id, task_id=ref.task_id
        )
    for row in rows:
        for item in items_of(row, file_url):
            if item["id"] == item_id:
                return row, item
    raise ItemNotFound(item_id)


async def find_item(
    services: Services, caller: Caller, conversation_id: str, item_id: str, file_url: FileUrl
) -> Item:
    return (await _locate(services, caller, conversation_id, item_id, file_url))[1]


async def delete_item(
    services: Services, caller: Caller, conversation_id: str, item_id: str
) -> Conversation:
    """Remove the item from its message (the message goes when nothing of it is left): the
    history, the web page and later turns' context no longer have it. The turn's task and
    its result stay."""

    def edit(row: Message) -> dict[str, Any] | None:
        # Checked again under the row's lock: a concurrent delete may have taken it.
        if item_id not in {i["id"] for i in items_of(row, str)}:
            raise ItemNotFound(item_id)
        return without_item(row, item_id)

    row, _ = await _locate(services, caller, conversation_id, item_id, str)
    async with services.db.session() as session:
        dropped = await store.edit_message(
            session, conversation_id, row.id, edit, tenant=caller.tenant
        )
        if dropped is None:
            raise ItemNotFound(item_id)
        conversation = await store.owned(session, conversation_id, tenant=caller.tenant)
    await _forget(services, dropped)
    return conversation


async def _forget(services: Services, keys: list[str]) -> None:
    """Remove bytes no record names any more (best effort: left behind, they are only space)."""
    if keys:
        try:
            await services.storage.delete(keys)
        except Exception as exc:
            log.warning("the bytes of %d image(s) were not removed: %s", len(keys), exc)
