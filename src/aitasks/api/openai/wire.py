"""Request shapes of the OpenAI API subset served here (responses are built as plain dicts)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aitasks.api.tool_shapes import ResponseFormatIn, ToolChoiceIn, ToolIn

ServiceTier = Literal["auto", "default", "flex", "priority", "scale"]


class ImageURL(BaseModel):
    url: str = Field(
        description="A data: URL, a link to a file of this service, or an http(s) URL."
    )
    detail: str | None = None


class ContentPart(BaseModel):
    """A part of a message's content: `{"type": "text", "text"}` or `{"type": "image_url",
    "image_url": {"url"}}`."""

    type: str
    text: str | None = None
    image_url: ImageURL | None = None


class FunctionCallIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = "{}"


class ToolCallIn(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    # An assistant message's calls, and the call a tool message answers.
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = Field(default=None, max_length=200)

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""

    def image_urls(self) -> list[str]:
        if not isinstance(self.content, list):
            return []
        return [p.image_url.url for p in self.content if p.type == "image_url" and p.image_url]


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Parameters this server does not act on are accepted and ignored, as OpenAI-compatible
    # servers commonly do; those it cannot honour (n > 1, hosted tools) are refused by the route.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    n: int | None = Field(default=None, ge=1)
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormatIn | None = None
    # aitasks' own (through the SDK's extra_body): continue, or keep, a conversation.
    conversation_id: str | None = None
    store: bool | None = None
    # The lane (`priority`: interactive, `flex`: batch, `auto` / `default`: default; unset, this
    # synchronous path is interactive), and aitasks' own deadline to start, in seconds.
    service_tier: ServiceTier | None = None
    expires_after: float | None = Field(default=None, ge=1, le=7 * 86_400)


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    prompt: str
    n: int = Field(default=1, ge=1, le=4)
    size: str | None = Field(default=None, pattern=r"^\d{2,4}x\d{2,4}$")
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = None
    conversation_id: str | None = None
    service_tier: ServiceTier | None = None
    expires_after: float | None = Field(default=None, ge=1, le=7 * 86_400)
