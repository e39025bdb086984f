"""A model name never steers where a provider sends the operator's key: it is escaped whole
into the URL, whatever it holds (routing refuses such names first; this is the second line)."""

from __future__ import annotations

import os

from aitasks.config import Settings
from aitasks.providers import make_provider
from aitasks.providers.base import ChatMessage, ChatRequest, Usage
from aitasks.routing import ModelKind, ModelSpec
from tests.support.fake_providers import gemini_server


async def test_gemini_escapes_the_model_name_into_one_path_segment() -> None:
    hostile = "gemini-x/../../../admin#"
    with gemini_server() as server:
        spec = ModelSpec(
            name=hostile,
            kind=ModelKind.CHAT,
            provider="gemini",
            queue="gemini",
            base_url=server.url,
            api_key_env="FAKE_GEMINI_KEY",
            timeout_s=5,
            served_by="gemini",
        )
        os.environ["FAKE_GEMINI_KEY"] = "secret-key"
        try:
            provider = make_provider(spec, Settings())
            request = ChatRequest(spec, [ChatMessage("user", "Hi")])
            pieces = [p async for p in provider.stream_chat(request) if not isinstance(p, Usage)]
            await provider.close()
        finally:
            del os.environ["FAKE_GEMINI_KEY"]
    assert pieces
    (sent,) = server.requests
    assert sent["raw_path"] == (
        "/v1beta/models/gemini-x%2F..%2F..%2F..%2Fadmin%23:streamGenerateContent"
    )
    assert sent["query"] == {"alt": "sse"}
