"""The public shapes of tasks, history, conversations and webhook deliveries, and how stored rows
become them. Shared by every surface that shows them (the API, event streams, webhooks), so it lives
below all of them. Image URLs are made absolute for the caller's host (and signed while auth is on).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from aitasks.links import Links
from aitasks.store.conversations import ConversationInfo
from aitasks.store.models import Message, Task, TaskStatus, WebhookDelivery, as_utc


class FunctionCallView(BaseModel):
    name: str
    arguments: str = Field(description="The arguments, as JSON text.")


class ToolCallView(BaseModel):
    """A tool call, in OpenAI's shape."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCallView


def tool_call_views(calls: list[dict[str, Any]] | None) -> list[ToolCallView] | None:
    """Stored tool calls (`providers.messages`) as the API shows them."""
    if not calls:
        return None
    return [
        ToolCallView(
            id=c["id"],
            type="function",
            function=FunctionCallView(name=c["name"], arguments=c["arguments"]),
        )
        for c in calls
    ]


class TaskView(BaseModel):
    task_id: str
    conversation_id: str
    kind: str
    model: str
    served_model: str | None = Field(
        default=None, description="The model that produced the result: `model` or a fallback."
    )
    provider: str = Field(description="The provider that serves this task (mock when no key).")
    status: TaskStatus
    result: str | list[str] | None = Field(
        description="The reply text for chat; the image URLs for images; null until SUCCESS."
    )
    error: dict[str, Any] | None
    usage: dict[str, int] | None = Field(
        default=None, description="prompt_tokens, completion_tokens, total_tokens (chat)."
    )
    tool_calls: list[ToolCallView] | None = Field(
        default=None,
        description="The functions the reply calls (chat with tools); answer them with a chat "
        "submit's `tool_results` in the same conversation.",
    )
    reasoning: str | None = Field(
        default=None, description="The model's reasoning, apart from the answer (when it gives it)."
    )
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    priority: str = Field(
        default="default", description="The lane it waits in: interactive, default or batch."
    )
    expires_at: datetime | None = Field(
        default=None, description="Not started by then, it ends EXPIRED (no model call)."
    )
    batch_id: str | None = Field(default=None, description="The batch it is a request of.")


class HistoryMessage(BaseModel):
    """A message; the fields after `created_at` appear only on messages that have them."""

    role: str = Field(description="user, assistant, or tool (a tool call's result).")
    content: str
    images: list[str] = Field(
        description="Image URLs: those the user sent, or those an image turn made."
    )
    task_id: str | None
    created_at: datetime
    tool_calls: list[ToolCallView] | None = Field(
        default=None, description="An assistant message's calls of the request's tools."
    )
    tool_call_id: str | None = Field(default=None, description="The call a tool message answers.")
    name: str | None = Field(default=None, description="The function a tool message answers.")
    reasoning: str | None = Field(default=None, description="An assistant's reasoning text.")


class ConversationView(BaseModel):
    id: str
    title: str | None
    system_prompt: str | None
    model: str | None = Field(description="The model of its latest turn.")
    message_count: int
    created_at: datetime
    updated_at: datetime = Field(description="Last activity.")


class WebhookDeliveryView(BaseModel):
    id: str = Field(description="The `webhook-id` header: the same on every retry.")
    event: str
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None = Field(description="The receiver's last HTTP status.")
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="When it is tried again (pending).")
    created_at: datetime
    delivered_at: datetime | None


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
        tool_calls=tool_call_views((task.result or {}).get("tool_calls")),
        reasoning=(task.result or {}).get("reasoning"),
        attempts=task.attempts,
        created_at=as_utc(task.created_at),
        updated_at=as_utc(task.updated_at),
        started_at=as_utc(task.started_at),
        finished_at=as_utc(task.finished_at),
        priority=task.priority or "default",
        expires_at=as_utc(task.expires_at),
        batch_id=task.batch_id,
    )


def history_messages(message: Message, links: Links) -> list[HistoryMessage]:
    """A stored message as history shows it: a turn that answered tool calls is one `tool`
    message per result; a user's images and an assistant's tool calls and reasoning come with
    their messages."""
    data = message.data or {}
    common = {"task_id": message.task_id, "created_at": as_utc(message.created_at)}
    if data.get("tool_results"):
        return [
            HistoryMessage(
                role="tool",
                content=r.get("content") or "",
                images=[],
                tool_call_id=r["tool_call_id"],
                **({"name": r["name"]} if r.get("name") else {}),
                **common,
            )
            for r in data["tool_results"]
        ]
    images = [i.get("url") or links.file(i["file_id"]) for i in data.get("images") or ()]
    extra: dict[str, Any] = {}
    if data.get("tool_calls"):
        extra["tool_calls"] = tool_call_views(data["tool_calls"])
    if data.get("reasoning"):
        extra["reasoning"] = data["reasoning"]
    return [
        HistoryMessage(
            role=message.role,
            content=message.content,
            images=images + [links.file(f) for f in message.files],
            **common,
            **extra,
        )
    ]


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
