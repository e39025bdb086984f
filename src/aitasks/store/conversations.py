"""Conversations: their messages in turn order, their summaries, and managing them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.errors import ConversationNotFound
from aitasks.store.conversation_items import delete_item_images, image_ids
from aitasks.store.models import (
    UNFINISHED_STATUSES,
    Conversation,
    Message,
    StoredFile,
    Task,
    utcnow,
)
from aitasks.store.paging import newest_first
from aitasks.store.scope import one_of, require


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """A conversation as lists show it."""

    id: str
    title: str | None
    system_prompt: str | None
    model: str | None  # of its latest turn
    message_count: int
    created_at: datetime
    updated_at: datetime


def _info_query() -> Select[Any]:
    messages = (
        select(func.count(Message.id))
        .where(Message.conversation_id == Conversation.id)
        .scalar_subquery()
    )
    latest_model = (
        select(Task.model)
        .where(Task.conversation_id == Conversation.id)
        .order_by(Task.turn.desc())
        .limit(1)
        .scalar_subquery()
    )
    return select(Conversation, messages, latest_model)


def _info(row: Any) -> ConversationInfo:
    conversation, count, model = row
    return ConversationInfo(
        id=conversation.id,
        title=conversation.title,
        system_prompt=conversation.system_prompt,
        model=model,
        message_count=count,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
    )


async def list_conversations(
    session: AsyncSession, *, tenant: str, after: str | None = None, limit: int = 20
) -> list[ConversationInfo]:
    """The tenant's conversations, latest activity first; `after` is the last id of the
    previous page."""
    query = await newest_first(
        session,
        _info_query(),
        Conversation,
        Conversation.updated_at,
        tenant=tenant,
        after=after,
        limit=limit,
    )
    return [_info(row) for row in await session.execute(query)]


async def get_conversation(
    session: AsyncSession, conversation_id: str, *, tenant: str
) -> ConversationInfo:
    """The tenant's conversation as lists show it; another's is as good as missing (404)."""
    query = one_of(_info_query(), Conversation, conversation_id, tenant=tenant)
    row = (await session.execute(query)).first()
    if row is None:
        raise ConversationNotFound(conversation_id)
    return _info(row)


async def update_conversation(
    session: AsyncSession, conversation_id: str, changes: dict[str, str | None], *, tenant: str
) -> ConversationInfo:
    """Change the title and/or the system prompt (None clears the system prompt)."""
    async with session.begin():
        changed = await session.execute(
            one_of(update(Conversation), Conversation, conversation_id, tenant=tenant)
            .values(**changes, updated_at=utcnow())
            .returning(Conversation.id)
        )
        if changed.first() is None:
            raise ConversationNotFound(conversation_id)
    session.expire_all()
    return await get_conversation(session, conversation_id, tenant=tenant)


@dataclass(frozen=True, slots=True)
class Deleted:
    # Tasks that were still waiting or running: their workers are told to stop.
    unfinished: list[str]
    # Where the conversation's files' bytes are, for the storage to forget them.
    file_keys: list[str]


async def delete_conversation(
    session: AsyncSession, conversation_id: str, *, tenant: str
) -> Deleted:
    """Delete a conversation with its tasks, messages and files' records, in one transaction.

    A worker still running one of its tasks finds the task gone and writes nothing.
    """
    async with session.begin():
        gone = await session.execute(
            one_of(update(Conversation), Conversation, conversation_id, tenant=tenant)
            .values(updated_at=utcnow())
            .returning(Conversation.id)
        )  # takes the row lock first, so no submit adds a turn meanwhile
        if gone.first() is None:
            raise ConversationNotFound(conversation_id)
        unfinished = await session.scalars(
            select(Task.id).where(
                Task.conversation_id == conversation_id, Task.status.in_(UNFINISHED_STATUSES)
            )
        )
        keys = await session.scalars(
            select(StoredFile.storage_key)
            .join(Task, StoredFile.task_id == Task.id)
            .where(Task.conversation_id == conversation_id)
        )
        deleted = Deleted(
            unfinished=list(unfinished),
            file_keys=[*keys, *await _item_images(session, conversation_id)],
        )
        # Tasks, messages, files' rows and idempotency keys go with it (ON DELETE CASCADE).
        await session.execute(delete(Conversation).where(Conversation.id == conversation_id))
    return deleted


async def _item_images(session: AsyncSession, conversation_id: str) -> list[str]:
    """Delete the rows of the images the conversation's items brought as `data:` URLs (they go
    with it, as a turn's images go with its task): their storage keys."""
    held = await session.scalars(
        select(Message.data).where(
            Message.conversation_id == conversation_id, Message.task_id.is_(None)
        )
    )
    return await delete_item_images(session, [i for d in held for i in image_ids(d)])


# What a chat turn's context starts with: the system prompt, and the stored summary with the last
# turn it covers (0 when there is none).
ContextHeader = tuple[str | None, str | None, int]


def header_of(system: str | None, summary: str | None, summary_turn: int | None) -> ContextHeader:
    return system, summary, (summary_turn or 0) if summary is not None else 0


async def context_header(session: AsyncSession, conversation_id: str) -> ContextHeader:
    """The conversation's context header (a deleted conversation has an empty one)."""
    row = (
        await session.execute(
            select(
                Conversation.system_prompt, Conversation.summary, Conversation.summary_turn
            ).where(Conversation.id == conversation_id)
        )
    ).first()
    if row is None:
        return None, None, 0
    return header_of(row[0], row[1], row[2])


async def conversation_messages(
    session: AsyncSession, conversation_id: str, *, tenant: str
) -> Sequence[Message]:
    """The tenant's conversation's messages, in order."""
    await require(session, Conversation, conversation_id, tenant=tenant)
    query = select(Message).where(Message.conversation_id == conversation_id)
    return (await session.scalars(query.order_by(Message.turn, Message.id))).all()


async def earlier_messages(
    session: AsyncSession, conversation_id: str, before_turn: int
) -> Sequence[Message]:
    """The messages of the turns before `before_turn`, in order: a worker's context. (Nothing to
    read for a first turn, the commonest; a deleted conversation reads as empty.)"""
    if before_turn <= 1:
        return []
    query = select(Message).where(
        Message.conversation_id == conversation_id, Message.turn < before_turn
    )
    return (await session.scalars(query.order_by(Message.turn, Message.id))).all()


async def save_summary(
    session: AsyncSession, conversation_id: str, summary: str, through_turn: int
) -> None:
    """Keep a summary, unless one that covers more turns was saved meanwhile."""
    async with session.begin():
        await session.execute(
            update(Conversation)
            .where(
                Conversation.id == conversation_id,
                or_(Conversation.summary_turn.is_(None), Conversation.summary_turn < through_turn),
            )
            .values(summary=summary, summary_turn=through_turn)
        )
