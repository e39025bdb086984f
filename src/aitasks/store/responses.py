"""What the Responses API asks of the store beyond a task: a conversation's state before a
response joins it, and deleting one response (one task) rather than its whole conversation.
Their SQL lives only here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.errors import ConversationNotFound, TaskNotFound
from aitasks.store.models import (
    UNFINISHED_STATUSES,
    Conversation,
    Message,
    StoredFile,
    Task,
    utcnow,
)
from aitasks.store.scope import get_owned, one_of


@dataclass(frozen=True, slots=True)
class ConversationState:
    """A conversation as a new response in it finds it."""

    system_prompt: str | None
    messages: Sequence[Message]
    # Whether a turn of it has not finished yet (its reply is still to come).
    busy: bool


async def conversation_state(
    session: AsyncSession, conversation_id: str, *, tenant: str
) -> ConversationState:
    """The tenant's conversation's system prompt, messages in order, and whether a turn of it
    is unfinished; another tenant's is as good as missing (404)."""
    async with session.begin():
        conversation = await get_owned(session, Conversation, conversation_id, tenant=tenant)
        messages = await session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.turn, Message.id)
        )
        busy = await session.scalar(
            select(
                exists().where(
                    Task.conversation_id == conversation_id,
                    Task.status.in_(UNFINISHED_STATUSES),
                )
            )
        )
        return ConversationState(conversation.system_prompt, messages.all(), bool(busy))


@dataclass(frozen=True, slots=True)
class DeletedTask:
    # Its files' bytes, for the storage to forget.
    file_keys: list[str]
    # Whether its conversation went with it (nothing else was left in it).
    conversation_deleted: bool


async def delete_task(
    session: AsyncSession, task_id: str, *, tenant: str, drop_empty_conversation: bool
) -> DeletedTask:
    """Delete the tenant's task with its messages and files' records (ON DELETE CASCADE), in
    one transaction; with `drop_empty_conversation`, its conversation too when no task and no
    message is left in it."""
    async with session.begin():
        task = await session.execute(
            one_of(select(Task.conversation_id), Task, task_id, tenant=tenant)
        )
        row = task.first()
        if row is None:
            raise TaskNotFound(task_id)
        conversation_id = row[0]
        # The conversation's row lock first, so no submit adds a turn meanwhile.
        locked = await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(updated_at=utcnow())
            .returning(Conversation.id)
        )
        if locked.first() is None:
            raise ConversationNotFound(conversation_id)
        keys = await session.scalars(
            select(StoredFile.storage_key).where(StoredFile.task_id == task_id)
        )
        file_keys = list(keys)
        await session.execute(delete(Task).where(Task.id == task_id))
        empty = drop_empty_conversation and not await session.scalar(
            select(
                exists().where(Task.conversation_id == conversation_id)
                | exists().where(Message.conversation_id == conversation_id)
            )
        )
        if empty:
            await session.execute(delete(Conversation).where(Conversation.id == conversation_id))
    return DeletedTask(file_keys, conversation_deleted=empty)
