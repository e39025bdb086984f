"""The official `openai` SDK (and LangChain's ChatOpenAI, built on it) against the embedded app,
in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
import openai

from tests.support.keyed_app import KeyedApp

BASE_URL = "http://testserver/openai/v1"


def async_openai(client: httpx.AsyncClient, api_key: str = "unused") -> openai.AsyncOpenAI:
    """The SDK on the app `client` serves (retries off: a test sees every answer)."""
    return openai.AsyncOpenAI(
        base_url=BASE_URL,
        api_key=api_key,
        max_retries=0,
        http_client=httpx.AsyncClient(transport=client._transport, timeout=30),
    )


@asynccontextmanager
async def sdk_with(app: KeyedApp, headers: Mapping[str, str]) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK on `app` with the key of `headers` (a `KeyedApp.key`), closed after."""
    client = async_openai(app.http, headers["Authorization"].removeprefix("Bearer "))
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def sdk_for(app: KeyedApp, name: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK on `app` with a new key of tenant `name`."""
    async with sdk_with(app, await app.key(name)) as client:
        yield client
