"""The official `openai` SDK (and LangChain's ChatOpenAI, built on it) against the embedded app,
in-process through httpx's ASGI transport."""

from __future__ import annotations

import httpx
import openai

BASE_URL = "http://testserver/openai/v1"


def async_openai(client: httpx.AsyncClient) -> openai.AsyncOpenAI:
    """The SDK on the app `client` serves (retries off: a test sees every answer)."""
    return openai.AsyncOpenAI(
        base_url=BASE_URL,
        api_key="unused",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=client._transport, timeout=30),
    )
