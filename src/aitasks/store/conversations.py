"""Conversations' messages, read in turn order."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select, update
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


async def summary_of(session: AsyncSession, conversation_id: str) -> tuple[str | None, int]:
    """The stored summary and the last turn it covers (0 when there is none)."""
    row = (
        await session.execute(
            select(Conversation.summary, Conversation.summary_turn).where(
                Conversation.id == conversation_id
            )
        )
    ).first()
    if row is None or row[0] is None:
        return None, 0
    return row[0], row[1] or 0


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
