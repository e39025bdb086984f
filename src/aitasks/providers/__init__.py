"""Model providers behind one interface; `IMPLEMENTED` names those this build can run."""

from __future__ import annotations

import importlib
import importlib.util
import os

from aitasks.config import Settings
from aitasks.errors import ConfigError
from aitasks.providers.base import (
    ChatMessage,
    ChatRequest,
    GeneratedImage,
    ImageRequest,
    Provider,
)
from aitasks.routing import MOCK_PROVIDER, ModelSpec

__all__ = [
    "IMPLEMENTED",
    "ChatMessage",
    "ChatRequest",
    "GeneratedImage",
    "ImageRequest",
    "Provider",
    "make_provider",
]

# Provider name -> "module:Class"; modules are imported only when a model uses them, so an SDK
# that is not installed costs nothing until then.
ADAPTERS = {
    "openai": "aitasks.providers.openai_compatible:OpenAICompatibleProvider",
    "gemini": "aitasks.providers.gemini:GeminiProvider",
    "anthropic": "aitasks.providers.anthropic_api:AnthropicProvider",
    "sd-webui": "aitasks.providers.sd_webui:SDWebUIProvider",
    "diffusers": "aitasks.providers.diffusers_local:DiffusersProvider",
}
# Providers that need an optional extra count only where it is installed.
NEEDS_EXTRA = {"diffusers": "diffusers"}
IMPLEMENTED = frozenset(
    {MOCK_PROVIDER}
    | {
        name
        for name in ADAPTERS
        if name not in NEEDS_EXTRA or importlib.util.find_spec(NEEDS_EXTRA[name]) is not None
    }
)


def make_provider(spec: ModelSpec, settings: Settings) -> Provider:
    """The provider that serves `spec`, built with its key and base URL from the environment."""
    if spec.served_by == MOCK_PROVIDER:
        from aitasks.providers.mock import MockProvider

        return MockProvider(latency_ms=settings.mock_latency_ms, fail_rate=settings.mock_fail_rate)
    target = ADAPTERS.get(spec.served_by)
    if target is None:
        raise ConfigError(f"provider {spec.served_by!r} is not available in this build")
    module_name, class_name = target.split(":")
    adapter = getattr(importlib.import_module(module_name), class_name)
    api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    base_url = os.environ.get(spec.base_url_env) if spec.base_url_env else spec.base_url
    provider: Provider = adapter(spec, api_key=api_key, base_url=base_url or spec.base_url)
    return provider
