"""Stored rows → the API's JSON shapes. Image URLs are made absolute for the caller's host (and
signed while auth is on)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from aitasks.api.schemas import (
    ConversationView,
    HistoryMessage,
    TaskView,
    WebhookDeliveryView,
)
from aitasks.links import Links
from aitasks.store.conversations import ConversationInfo
from aitasks.store.models import Message, Task, TaskStatus, WebhookDelivery, as_utc

Row = TypeVar("Row")


def task_view(task: Task, links: Links) -> TaskView:
    result: str | list[str] | None = None
    if task.result is not None:
        if "files" in task.result:
            result = [links.file(f) for f in task.result["files"]]
        else:
            result = task.result.get("text")
    return TaskView(
        task_id=task.id,
        conversation_id=task.conversation_id,
        kind=task.kind,
        model=task.model,
        served_model=task.served_model,
        provider=task.provider,
        status=TaskStatus(task.status),
        result=result,
        error=task.error,
        usage=task.usage,
        attempts=task.attempts,
        created_at=as_utc(task.created_at),
        updated_at=as_utc(task.updated_at),
        started_at=as_utc(task.started_at),
        finished_at=as_utc(task.finished_at),
    )


def history_message(message: Message, links: Links) -> HistoryMessage:
    return HistoryMessage(
        role=message.role,
        content=message.content,
        images=[links.file(f) for f in message.files],
        task_id=message.task_id,
        created_at=as_utc(message.created_at),
    )


def conversation_view(info: ConversationInfo) -> ConversationView:
    return ConversationView(
        id=info.id,
        title=info.title,
        system_prompt=info.system_prompt,
        model=info.model,
        message_count=info.message_count,
        created_at=as_utc(info.created_at),
        updated_at=as_utc(info.updated_at),
    )


def delivery_view(delivery: WebhookDelivery) -> WebhookDeliveryView:
    pending = delivery.status == "pending"
    return WebhookDeliveryView(
        id=delivery.id,
        event=delivery.event,
        url=delivery.url,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=as_utc(delivery.next_attempt_at) if pending else None,
        created_at=as_utc(delivery.created_at),
        delivered_at=as_utc(delivery.delivered_at),
    )


class Page(Generic[Row]):
    """One page of a newest-first list, fetched with one row more than asked to learn if more
    follow."""

    def __init__(self, rows: Sequence[Row], limit: int, key: Callable[[Row], str]) -> None:
        self.rows = rows[:limit]
        self.has_more = len(rows) > limit
        self.next_after = key(self.rows[-1]) if self.has_more else None
