"""The JSON shapes of the seed's API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from aitasks.api.tool_shapes import ResponseFormatIn, ToolChoiceIn, ToolIn
from aitasks.lifecycle.placement import MAX_EXPIRES_AFTER, MAX_TIMEOUT
from aitasks.priority import Lane
from aitasks.store.models import TaskStatus
from aitasks.views import ConversationView, HistoryMessage, TaskView, WebhookDeliveryView


def _iso_only(value: object) -> object:
    """Pydantic also reads a number as Unix time; the API promises ISO 8601 only."""
    try:
        float(str(value))
    except ValueError:
        return value
    raise ValueError("expected an ISO 8601 date-time, such as 2026-11-29T12:00:00Z")


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only)]

WebhookEvent = Literal[
    "task.running", "task.succeeded", "task.failed", "task.cancelled", "task.expired"
]


class SubmitRequest(BaseModel):
    """A chat or image request, as the seed defines it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"prompt": "Hello, who are you?", "model": "gemini-2.5-flash",
                          "conversation_id": None}]
        }
    )  # fmt: skip

    prompt: str = Field(
        description="What to say to the model, or the picture to draw.",
        # What the validator below checks, said in the schema: not empty, not only spaces.
        json_schema_extra={"minLength": 1, "pattern": r"\S"},
    )
    model: str = Field(min_length=1, max_length=200, description="A name from GET /v1/models.")
    conversation_id: str | None = Field(
        default=None, description="Continue this conversation; null starts a new one."
    )
    stream: StrictBool = Field(
        default=False, description="Answer with the new task's event stream (SSE) instead."
    )
    callback_url: str | None = Field(
        default=None,
        max_length=2000,
        description="POST the task here (signed, Standard Webhooks) when it finishes.",
    )
    callback_events: list[WebhookEvent] | None = Field(
        default=None,
        max_length=4,
        description="Events to send besides the terminal ones (task.succeeded, task.failed, "
        "task.cancelled, task.expired, always sent): task.running.",
    )
    priority: Lane | None = Field(
        default=None,
        description="The lane it waits in: interactive, default or batch. Unset: interactive "
        "with `stream` or `Prefer: wait`, else default; never above what the key may use.",
    )
    expires_after: float | None = Field(
        default=None,
        ge=1,
        le=MAX_EXPIRES_AFTER,
        description="Seconds it may wait to start; past that it ends EXPIRED without calling the "
        "model. Unset: the key's default, else the model's, else no deadline.",
    )
    timeout: float | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT,
        description="Seconds its run may take from its first start, across every attempt; past "
        "that it ends FAILED (type timeout).",
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("prompt must not be empty")
        return prompt

    @field_validator("conversation_id")
    @classmethod
    def _empty_is_none(cls, conversation_id: str | None) -> str | None:
        return conversation_id or None


class ToolResultIn(BaseModel):
    """The result of one of the conversation's pending tool calls."""

    tool_call_id: str = Field(min_length=1, max_length=200, description="The call it answers.")
    content: str = Field(max_length=1_000_000, description="What the function returned, as text.")


class ChatSubmitRequest(SubmitRequest):
    """A chat turn: the seed's fields, and (all optional) tools, structured output, images, or
    the results of the conversation's pending tool calls instead of a prompt."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"prompt": "Hello, who are you?", "model": "gemini-2.5-flash",
                          "conversation_id": None}],
            # A prompt (with images or not), or tool results (alone).
            "oneOf": [
                {"required": ["prompt"], "not": {"required": ["tool_results"]}},
                {"required": ["tool_results"],
                 "not": {"anyOf": [{"required": ["prompt"]}, {"required": ["images"]}]}},
            ],
        }
    )  # fmt: skip

    # Optional, but not nullable: left out when the turn answers tool calls.
    prompt: str = Field(  # type: ignore[assignment]
        default=None,
        description="What to say to the model; left out when the turn answers tool calls.",
        json_schema_extra={"minLength": 1, "pattern": r"\S"},
    )
    tools: list[ToolIn] | None = Field(
        default=None, max_length=128, description="Functions the model may call (OpenAI's shape)."
    )
    tool_choice: ToolChoiceIn | None = Field(
        default=None, description='"auto", "none", "required", or a named function.'
    )
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormatIn | None = Field(
        default=None, description="json_object, or json_schema with a schema (OpenAI's shape)."
    )
    images: list[str] = Field(
        default=None,  # type: ignore[arg-type]  # optional, but not nullable
        max_length=64,
        description="Images for the model: file ids (POST /v1/files) or data: URLs.",
    )
    tool_results: list[ToolResultIn] = Field(
        default=None,  # type: ignore[arg-type]  # optional, but not nullable
        min_length=1,
        max_length=128,
        description="The results of the conversation's pending tool calls (every one of them), "
        "instead of a prompt.",
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str | None) -> str | None:  # type: ignore[override]
        if prompt is not None and not prompt.strip():
            raise ValueError("prompt must not be empty")
        return prompt

    @model_validator(mode="after")
    def _prompt_or_results(self) -> ChatSubmitRequest:
        if (self.prompt is None) == (self.tool_results is None):
            raise ValueError("a chat turn has a prompt, or tool_results (not both)")
        if self.tool_results is not None and self.images is not None:
            raise ValueError("images go with a prompt, not with tool_results")
        return self


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="What went wrong, for programs: `not_found`, `rate_limited`...")
    message: str = Field(description="What went wrong, for people.")
    param: str | None = Field(description="The part of the request at fault, when one is.")


class ErrorBody(BaseModel):
    """Every error, whatever its status."""

    error: ErrorDetail


class SubmitResponse(BaseModel):
    task_id: str
    conversation_id: str
    status: TaskStatus


class HistoryView(BaseModel):
    conversation_id: str
    messages: list[HistoryMessage]


class ModelView(BaseModel):
    id: str
    kind: str
    queue: str
    provider: str = Field(description="The provider this model is configured for.")
    served_by: str = Field(description="The provider that actually serves it now.")
    context_window: int
    supports: list[str] = Field(
        default_factory=list,
        description="What a chat model takes beyond text: tools, vision, and json_object / "
        "json_schema served natively (without them, JSON is asked for and checked).",
    )


class PatternView(BaseModel):
    prefix: str | None
    contains: list[str]
    kind: str
    queue: str
    provider: str
    served_by: str
    supports: list[str] = Field(default_factory=list)


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelView]
    patterns: list[PatternView] = Field(
        description="Rules for names not in the table, tried in order."
    )


class TaskList(BaseModel):
    object: str = "list"
    data: list[TaskView]
    has_more: bool
    next_after: str | None = Field(description="Pass as `after` for the next page.")


class ConversationList(BaseModel):
    object: str = "list"
    data: list[ConversationView]
    has_more: bool
    next_after: str | None = Field(description="Pass as `after` for the next page.")


class ConversationPatch(BaseModel):
    """Fields to change (at least one); those left out stay as they are."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    # Optional, but not nullable: a conversation always has a title.
    title: str = Field(default=None, min_length=1, max_length=200)  # type: ignore[assignment]
    system_prompt: str | None = Field(default=None, max_length=32_000)

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, title: str | None) -> str | None:
        if title is not None and not title.strip():
            raise ValueError("title must not be empty")
        return title


class Deletion(BaseModel):
    id: str
    object: str = "conversation"
    deleted: bool = True


class WebhookDeliveryList(BaseModel):
    object: str = "list"
    data: list[WebhookDeliveryView]


class WebhookSecret(BaseModel):
    secret: str = Field(description="Verifies this key's webhooks (`whsec_...`).")
