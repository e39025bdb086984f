"""Each provider adapter against a local server speaking its protocol: the request it sends, the
reply it streams, the usage it reports, and how each kind of failure is classified."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from PIL import Image

from aitasks.config import Settings
from aitasks.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)
from aitasks.providers import make_provider
from aitasks.providers.base import ChatMessage, ChatRequest, ImageRequest, Provider, Usage
from aitasks.routing import ModelKind
from tests.support.fake_providers import (
    REPLY,
    FakeServer,
    gemini_server,
    openai_server,
    sd_webui_server,
)
from tests.support.provider_specs import CHAT_PROVIDERS, spec_for

MESSAGES = [
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Hi"),
    ChatMessage("assistant", "Hello."),
    ChatMessage("user", "How far is the moon?"),
]


@pytest.fixture(params=list(CHAT_PROVIDERS))
def chat(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, FakeServer, Callable[[], Provider]]]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "secret-key")
    make_server, suffix = CHAT_PROVIDERS[request.param]
    with make_server() as server:
        spec = spec_for(request.param, server.url + suffix)
        yield request.param, server, lambda: make_provider(spec, Settings(_env_file=None))  # type: ignore[call-arg]


async def collect(provider: Provider, messages: list[ChatMessage]) -> tuple[str, Usage | None]:
    spec = spec_for("x", "")
    text, usage = "", None
    request = ChatRequest(spec, messages, params={"temperature": 0.5, "max_tokens": 64})
    try:
        async for piece in provider.stream_chat(request):
            if isinstance(piece, Usage):
                usage = piece
            else:
                text += piece
    finally:
        await provider.close()
    return text, usage


async def test_a_streamed_reply_with_usage(
    chat: tuple[str, FakeServer, Callable[[], Provider]],
) -> None:
    name, server, make = chat
    text, usage = await collect(make(), MESSAGES)
    assert text == "".join(REPLY)
    assert usage is not None and usage.completion_tokens == 4 and usage.prompt_tokens > 0
    (sent,) = server.requests
    body, headers = sent["body"], sent["headers"]
    if name == "openai":
        assert sent["path"] == "/v1/chat/completions"
        assert headers["authorization"] == "Bearer secret-key"
        assert body["model"] == "upstream-model" and body["stream"] is True
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["temperature"] == 0.5 and body["max_tokens"] == 64
    elif name == "gemini":
        assert sent["path"] == "/v1beta/models/upstream-model:streamGenerateContent"
        assert sent["query"] == {"alt": "sse"} and headers["x-goog-api-key"] == "secret-key"
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        assert body["generationConfig"] == {"temperature": 0.5, "maxOutputTokens": 64}
    else:
        assert sent["path"] == "/v1/messages"
        # The SDK sends the key as x-api-key, or (newer releases) as a bearer token.
        assert "secret-key" in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
        assert "anthropic-version" in headers
        assert body["system"] == "Be brief." and body["max_tokens"] == 64
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["stream"] is True and body["temperature"] == 0.5


@pytest.mark.parametrize(
    ("marker", "error", "retryable"),
    [
        ("please 429", ProviderRateLimited, True),
        ("please 500", ProviderServerError, True),
        ("please 400", ProviderBadRequest, False),
        ("please hang", ProviderTimeout, True),
    ],
)
async def test_failures_are_classified(
    chat: tuple[str, FakeServer, Callable[[], Provider]],
    marker: str,
    error: type[ProviderError],
    retryable: bool,
) -> None:
    _, _, make = chat
    with pytest.raises(error) as caught:
        await collect(make(), [ChatMessage("user", f"x {marker}")])
    assert caught.value.retryable is retryable
    if error is ProviderRateLimited:
        assert caught.value.retry_after == 1.0
    if error is ProviderBadRequest:
        assert "the fake says 400" in caught.value.message  # the provider's own words are kept


@pytest.mark.parametrize(
    ("provider", "make_server", "suffix"),
    [("openai", openai_server, "/v1"), ("gemini", gemini_server, ""),
     ("sd-webui", sd_webui_server, "")],
)  # fmt: skip
async def test_images(
    provider: str,
    make_server: Callable[[], FakeServer],
    suffix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "secret-key")
    with make_server() as server:
        spec = spec_for(provider, server.url + suffix, ModelKind.IMAGE)
        adapter = make_provider(spec, Settings(_env_file=None))  # type: ignore[call-arg]
        images = await adapter.generate_images(
            ImageRequest(spec, "a red square", n=2, size=(64, 32))
        )
        await adapter.close()
        with pytest.raises(ProviderBadRequest):
            failing = make_provider(spec, Settings(_env_file=None))  # type: ignore[call-arg]
            try:
                await failing.generate_images(ImageRequest(spec, "x please 400"))
            finally:
                await failing.close()
    assert len(images) == 2
    for image in images:
        assert Image.open(io.BytesIO(image.data)).format == "PNG"
    body = server.requests[0]["body"]
    if provider == "sd-webui":
        assert (body["width"], body["height"], body["batch_size"]) == (64, 32, 2)
        assert body["override_settings"] == {"sd_model_checkpoint": "upstream-model"}
    elif provider == "openai":
        assert body["size"] == "64x32" and body["response_format"] == "b64_json"


def test_the_table_serves_a_model_by_its_provider_once_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aitasks.providers import IMPLEMENTED
    from aitasks.routing import ModelTable

    assert ModelTable.load(implemented=IMPLEMENTED).resolve("claude-sonnet-4-5").uses_mock
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("SD_WEBUI_URL", "http://127.0.0.1:7860")
    table = ModelTable.load(implemented=IMPLEMENTED)
    assert table.resolve("claude-sonnet-4-5").served_by == "anthropic"
    assert table.resolve("claude-opus-5").served_by == "anthropic"  # by pattern
    assert table.resolve("stable-diffusion-3").served_by == "sd-webui"
    assert replace(table.resolve("gemini-2.5-flash")).uses_mock  # no GEMINI_API_KEY
