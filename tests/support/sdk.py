"""The official `openai` SDK (and LangChain's ChatOpenAI, built on it) against the embedded app,
in-process through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
from openai.types.responses import ResponseTextDeltaEvent

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


ENDED = {"completed", "failed", "cancelled", "incomplete"}


async def until_ended(
    sdk: openai.AsyncOpenAI, response_id: str, within: float = 30, statuses: set[str] = ENDED
) -> Any:
    """The response once polled in one of `statuses` (by default, once it has ended)."""
    async with asyncio.timeout(within):
        while True:
            response = await sdk.responses.retrieve(response_id)
            if response.status in statuses:
                return response
            await asyncio.sleep(0.05)


def openai_at(base_url: str) -> openai.OpenAI:
    """The (blocking) SDK on a running gateway's OpenAI-compatible app."""
    return openai.OpenAI(base_url=f"{base_url}/openai/v1", api_key="unused", max_retries=0)


def a_few_events(client: openai.OpenAI, prompt: str, *, deltas: int = 3) -> list[Any]:
    """A background response streamed until its `deltas`-th piece of text: the events read
    (from `response.created` on); then the reader goes."""
    stream = client.responses.create(model="mock-chat", input=prompt, stream=True, background=True)
    first: list[Any] = []
    for event in stream:
        first.append(event)
        if sum(isinstance(e, ResponseTextDeltaEvent) for e in first) == deltas:
            break
    stream.close()
    return first


def joined(events: list[Any]) -> str:
    """The text a response's stream events carried."""
    return "".join(e.delta for e in events if isinstance(e, ResponseTextDeltaEvent))


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
