"""A conversation's messages as the Conversations API reads and changes them: new turns of
messages without a task, a page of messages from a given one, one message, its metadata."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.errors import ConversationNotFound, LimitExceeded
from aitasks.store.file_records import INSERT_FILE
from aitasks.store.models import (
    Conversation,
    Message,
    Role,
    StoredFile,
    new_id,
    table_of,
    utcnow,
)
from aitasks.store.scope import get_owned, one_of, require

INSERT_MESSAGE = insert(table_of(Message)).returning(table_of(Message).c.id)
# The purpose of an image sent as a `data:` URL in an item: a file no task holds, which goes
# with its message or its conversation.
ITEM_IMAGE = "conversation_item"


def image_ids(data: dict[str, Any] | None) -> list[str]:
    """The ids of this service's files among a message's images."""
    return [str(i["file_id"]) for i in (data or {}).get("images") or () if i.get("file_id")]


async def delete_item_images(session: AsyncSession, file_ids: Sequence[str]) -> list[str]:
    """Delete the rows of those of `file_ids` that items brought (in the caller's transaction):
    their storage keys, for the store to forget after the commit."""
    if not file_ids:
        return []
    gone = await session.scalars(
        delete(StoredFile)
        .where(StoredFile.id.in_(list(file_ids)), StoredFile.purpose == ITEM_IMAGE)
        .returning(StoredFile.storage_key)
    )
    return list(gone)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A message to write: its turn within the request (from 1) and its columns."""

    turn: int
    role: str
    content: str
    data: dict[str, Any] | None


async def add_turns(
    session: AsyncSession,
    conversation_id: str | None,
    rows: Sequence[StoredRow],
    *,
    tenant: str,
    max_turns: int,
    files: Sequence[dict[str, Any]] = (),
    metadata: dict[str, str] | None = None,
    title: str | None = None,
) -> tuple[Conversation, list[int]]:
    """Write `rows` as the conversation's next turns (a new conversation when `conversation_id`
    is None), with the records of the images they hold, in one transaction: the conversation and
    the ids of the new messages, in order."""
    now = utcnow()
    count = max((r.turn for r in rows), default=0)
    async with session.begin():
        if conversation_id is None:
            conversation_id, first = new_id(), 1
            session.add(
                Conversation(
                    id=conversation_id,
                    tenant=tenant,
                    title=title,
                    turns=count,
                    meta=metadata,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
        else:
            # The row lock this takes orders these turns among concurrent submits.
            taken = await session.execute(
                one_of(update(Conversation), Conversation, conversation_id, tenant=tenant)
                .values(turns=Conversation.turns + count, updated_at=now)
                .returning(Conversation.turns)
            )
            last = taken.first()
            if last is None:
                raise ConversationNotFound(conversation_id)
            first = last[0] - count + 1
        if first + count - 1 > max_turns:
            raise LimitExceeded(
                f"the conversation would have {first + count - 1} turns; the limit is "
                f"{max_turns} (AITASKS_MAX_TURNS)",
                param="items",
                limit=max_turns,
            )
        if files:
            await session.execute(INSERT_FILE, list(files))
        ids = []
        for row in rows:
            written = await session.execute(
                INSERT_MESSAGE,
                {
                    "conversation_id": conversation_id,
                    "turn": first + row.turn - 1,
                    "role": row.role,
                    "content": row.content,
                    "files": [],
                    "data": row.data,
                    "task_id": None,
                    "created_at": now,
                },
            )
            ids.append(int(written.scalar_one()))
    return await owned(session, conversation_id, tenant=tenant), ids


async def owned(session: AsyncSession, conversation_id: str, *, tenant: str) -> Conversation:
    """The tenant's conversation, freshly read, or 404."""
    return await get_owned(session, Conversation, conversation_id, tenant=tenant)


async def set_metadata(
    session: AsyncSession, conversation_id: str, metadata: dict[str, str], *, tenant: str
) -> Conversation:
    async with session.begin():
        changed = await session.execute(
            one_of(update(Conversation), Conversation, conversation_id, tenant=tenant)
            .values(meta=metadata, updated_at=utcnow())
            .returning(Conversation.id)
        )
        if changed.first() is None:
            raise ConversationNotFound(conversation_id)
    return await owned(session, conversation_id, tenant=tenant)


async def messages_by_id(
    session: AsyncSession, conversation_id: str, ids: Sequence[int]
) -> list[Message]:
    """The conversation's messages of `ids`, in conversation order."""
    query = select(Message).where(
        Message.conversation_id == conversation_id, Message.id.in_(list(ids))
    )
    return list(await session.scalars(query.order_by(Message.turn, Message.id)))


async def messages_holding(
    session: AsyncSession,
    conversation_id: str,
    *,
    tenant: str,
    row_id: int | None = None,
    task_id: str | None = None,
) -> list[Message]:
    """The tenant's conversation's messages an item may be in (404 for the conversation), in
    conversation order: the row `row_id`, else the reply of task `task_id`, else every reply a
    task made."""
    await require(session, Conversation, conversation_id, tenant=tenant)
    query = select(Message).where(Message.conversation_id == conversation_id)
    if row_id is not None:
        query = query.where(Message.id == row_id)
    else:
        query = query.where(Message.role == Role.ASSISTANT, Message.task_id.is_not(None))
        if task_id is not None:
            query = query.where(Message.task_id == task_id)
    query = query.order_by(Message.turn, Message.id).execution_options(populate_existing=True)
    return list(await session.scalars(query))


async def page_from(
    session: AsyncSession,
    conversation_id: str,
    *,
    start: Message | None,
    descending: bool,
    limit: int,
) -> list[Message]:
    """Up to `limit` of the conversation's messages in conversation order (or its reverse),
    from `start` itself on (from the first when None)."""
    query = select(Message).where(Message.conversation_id == conversation_id)
    if start is not None:
        if descending:
            query = query.where(
                or_(
                    Message.turn < start.turn,
                    and_(Message.turn == start.turn, Message.id <= start.id),
                )
            )
        else:
            query = query.where(
                or_(
                    Message.turn > start.turn,
                    and_(Message.turn == start.turn, Message.id >= start.id),
                )
            )
    if descending:
        query = query.order_by(Message.turn.desc(), Message.id.desc())
    else:
        query = query.order_by(Message.turn, Message.id)
    return list(await session.scalars(query.limit(limit)))


async def edit_message(
    session: AsyncSession,
    conversation_id: str,
    message_id: int,
    edit: Callable[[Message], dict[str, Any] | None],
    *,
    tenant: str,
) -> list[str] | None:
    """Change one of the tenant's conversation's messages to what `edit` makes of it (its new
    columns, or None to delete it), read and written under the row's lock in one transaction;
    None when there is no such message (404 for the conversation), else the storage keys of
    the images it no longer holds that items brought."""
    async with session.begin():
        await require(session, Conversation, conversation_id, tenant=tenant)
        where = and_(Message.conversation_id == conversation_id, Message.id == message_id)
        row = (
            await session.scalars(
                select(Message)
                .where(where)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).first()
        if row is None:
            return None
        changes = edit(row)
        if changes is None:
            await session.execute(delete(Message).where(where))
        else:
            await session.execute(update(Message).where(where).values(**changes))
        kept = set(image_ids(changes["data"])) if changes is not None else set()
        dropped = [i for i in image_ids(row.data) if i not in kept]
        keys = await delete_item_images(session, dropped)
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(updated_at=utcnow())
        )
    return keys
