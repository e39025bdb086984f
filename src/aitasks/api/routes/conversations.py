"""GET /v1/conversations/{conversation_id}/history."""

from __future__ import annotations

from fastapi import APIRouter, Request

from aitasks.api.deps import SessionDep
from aitasks.api.schemas import HistoryView
from aitasks.api.views import history_message
from aitasks.store import conversations as store

router = APIRouter(prefix="/v1", tags=["conversations"])


@router.get("/conversations/{conversation_id}/history", response_model=HistoryView)
async def read_history(conversation_id: str, session: SessionDep, request: Request) -> HistoryView:
    """The conversation's messages in the order of its turns."""
    messages = await store.conversation_messages(session, conversation_id)
    return HistoryView(
        conversation_id=conversation_id,
        messages=[history_message(m, request.base_url) for m in messages],
    )
