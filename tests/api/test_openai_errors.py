"""OpenAI-shaped errors that need settings of their own, through the SDK over the ASGI transport."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.embedded import EmbeddedFactory


async def test_a_full_queue_is_the_sdks_rate_limit_error(embedded: EmbeddedFactory) -> None:
    async with embedded(worker_concurrency=1, max_queue_depth=1) as client:
        busy = await client.post(
            "/v1/chat/completions", json={"prompt": "[latency:3000]", "model": "mock-chat"}
        )
        assert busy.status_code == 202
        sdk = openai.AsyncOpenAI(
            base_url="http://testserver/openai/v1",
            api_key="unused",
            max_retries=0,
            http_client=httpx.AsyncClient(transport=client._transport),
        )
        with pytest.raises(openai.RateLimitError) as limited:
            await sdk.chat.completions.create(
                model="mock-chat", messages=[{"role": "user", "content": "one more"}]
            )
        assert limited.value.code == "queue_full"
        assert limited.value.response.headers["retry-after"] == "5"
        await sdk.close()


async def test_bad_bodies_are_400_in_openais_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/openai/v1/chat/completions", json={"model": "mock-chat"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == "messages"
    broken = await client.post(
        "/openai/v1/images/generations", json={"model": "mock-image", "prompt": "x", "size": "big"}
    )
    assert broken.status_code == 400 and broken.json()["error"]["param"] == "size"
