"""What a conversation's messages say about its next turn: the tool calls waiting for results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.store.models import Conversation, Message, Role
from aitasks.store.scope import require


async def pending_tool_calls(
    session: AsyncSession, conversation_id: str, *, tenant: str
) -> list[dict[str, Any]]:
    """The tool calls of the tenant's conversation's latest reply, which the next turn's tool
    results answer (`providers.messages` shape); none when its latest message is not a reply
    that calls tools. A conversation of another tenant is as good as missing (404)."""
    await require(session, Conversation, conversation_id, tenant=tenant)
    latest = (
        await session.execute(
            select(Message.role, Message.data)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.turn.desc(), Message.id.desc())
            .limit(1)
        )
    ).first()
    if latest is None or latest[0] != Role.ASSISTANT or not latest[1]:
        return []
    return list(latest[1].get("tool_calls") or [])
