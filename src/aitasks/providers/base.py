"""The provider seam: one small interface that every model provider implements."""

from __future__ import annotations

from abc import ABC
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aitasks.errors import ProviderError
from aitasks.routing import ModelSpec


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image a user message carries: its bytes (read from this service's file storage by the
    worker), or a remote URL, passed only to providers that fetch URLs themselves."""

    media_type: str = "image/png"
    data: bytes | None = None
    url: str | None = None
    # The stored file it came from (its bytes are read once the context is fitted).
    file_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for: its id, the function's name and the arguments as
    JSON text (as OpenAI's API carries them)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's reasoning text, streamed apart from the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat's context. Plain turns are a role and text; the rest is structure a
    provider maps to its own shape: a user's images, an assistant's tool calls (and reasoning,
    which is sent back only to a model that asks for it), a tool result's call id."""

    role: str  # "system" | "user" | "assistant" | "tool"
    content: str
    images: tuple[ImagePart, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    # A tool message: the call it answers, and the function's name (Gemini wants it).
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, what it does, and its parameters' JSON schema."""

    name: str
    parameters: Mapping[str, Any]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether the model may, must or must not call a tool: `auto`, `required`, `none`, or
    `function` with the one function's `name`."""

    mode: str = "auto"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Structured output: `json_object`, or `json_schema` with the schema (and its name)."""

    type: str
    schema: Mapping[str, Any] | None = None
    name: str = "response"
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: ModelSpec
    # The conversation's context, oldest first, ending with the new input (a user message, or
    # the tool results answering the last assistant message's calls).
    messages: Sequence[ChatMessage]
    # 1 for the first try, 2 for the first retry, ...
    attempt: int = 1
    # temperature, top_p, max_tokens, stop, seed, user: passed on where the provider has them.
    params: Mapping[str, Any] = field(default_factory=dict)
    tools: Sequence[Tool] = ()
    tool_choice: ToolChoice = ToolChoice()
    parallel_tool_calls: bool = True
    # Passed to the provider when it serves the format natively; else None here, and the worker
    # instructs the model and validates the reply.
    response_format: ResponseFormat | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens as the provider counted them; a chat stream may end with one."""

    prompt_tokens: int
    completion_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


# What a chat stream yields: answer text, reasoning text, a whole tool call, and the usage last.
ChatPiece = str | Reasoning | ToolCall | Usage


@dataclass(frozen=True, slots=True)
class ImageRequest:
    model: ModelSpec
    prompt: str
    n: int = 1
    size: tuple[int, int] = (512, 512)
    attempt: int = 1
    # Provider-specific settings (diffusers: steps).
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes
    content_type: str


class Provider(ABC):
    """A model provider. Chat replies stream as text pieces; images come back whole."""

    name: str

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatPiece]:
        """The reply to the request's last message, piece by piece as the model produces it
        (text, reasoning, whole tool calls), and, when the provider reports it, the usage last."""
        raise ProviderError(f"provider {self.name!r} does not serve chat")

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        raise ProviderError(f"provider {self.name!r} does not generate images")

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing to release
        """Release clients and connections."""
