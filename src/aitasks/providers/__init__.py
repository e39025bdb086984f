"""Model providers behind one interface; `IMPLEMENTED` names those this build can run."""

from __future__ import annotations

from aitasks.config import Settings
from aitasks.errors import ConfigError
from aitasks.providers.base import (
    ChatMessage,
    ChatRequest,
    GeneratedImage,
    ImageRequest,
    Provider,
)
from aitasks.routing import MOCK_PROVIDER

__all__ = [
    "IMPLEMENTED",
    "ChatMessage",
    "ChatRequest",
    "GeneratedImage",
    "ImageRequest",
    "Provider",
    "make_provider",
]

IMPLEMENTED = frozenset({MOCK_PROVIDER})


def make_provider(name: str, settings: Settings) -> Provider:
    """A provider instance; optional SDKs are imported only when their provider is used."""
    if name == MOCK_PROVIDER:
        from aitasks.providers.mock import MockProvider

        return MockProvider(latency_ms=settings.mock_latency_ms, fail_rate=settings.mock_fail_rate)
    raise ConfigError(f"provider {name!r} is not available in this build")
