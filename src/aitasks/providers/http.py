"""What the providers that speak plain HTTP (Gemini, sd-webui) share: a client, and errors
translated at the boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from aitasks.errors import ProviderConnectionError, ProviderTimeout
from aitasks.providers.failures import from_status


@contextlib.contextmanager
def translated_errors(provider: str) -> Iterator[None]:
    """Turn httpx's transport errors into the provider error classes."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(f"{provider}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ProviderConnectionError(f"{provider}: {exc or type(exc).__name__}") from exc


async def raise_for_status(provider: str, response: httpx.Response) -> None:
    """Raise the classified error for a non-2xx answer, keeping the provider's own message."""
    if response.is_success:
        return
    await response.aread()
    try:
        body = response.json()
    except ValueError:
        body = response.text[:500]
    raise from_status(provider, response.status_code, _message(body), response.headers)


def _message(body: object) -> str:
    """The provider's own words from an error body: `error.message` (Google, OpenAI-style) or
    `detail` (FastAPI-based servers such as sd-webui), else the body itself."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("detail"):
            return str(body["detail"])
    return str(body)[:500]


def client(
    base_url: str, timeout: float, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
    )
