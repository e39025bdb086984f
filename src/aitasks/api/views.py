"""Stored rows → the API's JSON shapes. Image URLs are made absolute for the caller's host."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from starlette.datastructures import URL

from aitasks.api.schemas import ConversationView, HistoryMessage, TaskView
from aitasks.store.conversations import ConversationInfo
from aitasks.store.models import Message, Task, TaskStatus, as_utc

Row = TypeVar("Row")


def file_url(base_url: URL, file_id: str) -> str:
    return f"{str(base_url).rstrip('/')}/v1/files/{file_id}"


def task_view(task: Task, base_url: URL) -> TaskView:
    result: str | list[str] | None = None
    if task.result is not None:
        if "files" in task.result:
            result = [file_url(base_url, f) for f in task.result["files"]]
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


def history_message(message: Message, base_url: URL) -> HistoryMessage:
    return HistoryMessage(
        role=message.role,
        content=message.content,
        images=[file_url(base_url, f) for f in message.files],
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


class Page(Generic[Row]):
    """One page of a newest-first list, fetched with one row more than asked to learn if more
    follow."""

    def __init__(self, rows: Sequence[Row], limit: int, key: Callable[[Row], str]) -> None:
        self.rows = rows[:limit]
        self.has_more = len(rows) > limit
        self.next_after = key(self.rows[-1]) if self.has_more else None
