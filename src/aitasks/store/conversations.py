"""Conversations' messages, read in turn order."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.errors import ConversationNotFound
from aitasks.store.models import Conversation, Message


async def conversation_messages(
    session: AsyncSession, conversation_id: str, *, before_turn: int | None = None
) -> Sequence[Message]:
    """A conversation's messages in order; only the turns before `before_turn` when given."""
    found = await session.scalar(select(Conversation.id).where(Conversation.id == conversation_id))
    if found is None:
        raise ConversationNotFound(conversation_id)
    query = select(Message).where(Message.conversation_id == conversation_id)
    if before_turn is not None:
        query = query.where(Message.turn < before_turn)
    return (await session.scalars(query.order_by(Message.turn, Message.id))).all()
