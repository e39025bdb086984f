"""The provider seam: one small interface that every model provider implements."""

from __future__ import annotations

from abc import ABC
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aitasks.errors import ProviderError
from aitasks.routing import ModelSpec


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: ModelSpec
    # The conversation's context, oldest first, ending with the new user prompt.
    messages: Sequence[ChatMessage]
    # 1 for the first try, 2 for the first retry, ...
    attempt: int = 1
    # temperature, top_p, max_tokens, stop, seed, user: passed on where the provider has them.
    params: Mapping[str, Any] = field(default_factory=dict)


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

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        """The reply to the request's last message, piece by piece as the model produces it,
        and, when the provider reports it, the usage last."""
        raise ProviderError(f"provider {self.name!r} does not serve chat")

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        raise ProviderError(f"provider {self.name!r} does not generate images")

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing to release
        """Release clients and connections."""
