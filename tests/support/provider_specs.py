"""The chat providers' local servers, and a model spec pointing at one, for the provider tests."""

from __future__ import annotations

from aitasks.routing import ModelKind, ModelSpec
from tests.support.fake_providers import anthropic_server, gemini_server, openai_server

CHAT_PROVIDERS = {
    "openai": (openai_server, "/v1"),
    "gemini": (gemini_server, ""),
    "anthropic": (anthropic_server, ""),
}


def spec_for(provider: str, base_url: str, kind: ModelKind = ModelKind.CHAT) -> ModelSpec:
    return ModelSpec(
        name=f"{provider}-test",
        kind=kind,
        provider=provider,
        queue="q",
        upstream_model="upstream-model",
        base_url=base_url,
        api_key_env="FAKE_PROVIDER_KEY",
        timeout_s=1,
        served_by=provider,
    )
