"""Provider failures translated at the boundary into the retry classes of `aitasks.errors`.

One table for every provider: 429 is rate limited (with its `Retry-After`), 408 and 5xx (and
Anthropic's 529 "overloaded") are worth another try, any other 4xx (bad request, bad key, no such
model) is final and keeps the provider's message.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from types import ModuleType

from aitasks.errors import (
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)

# The longest Retry-After honoured; a provider asking for more is retried at this bound.
MAX_RETRY_AFTER_SECONDS = 300.0


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After` (delta-seconds or an HTTP date) or `retry-after-ms` header."""
    if "retry-after-ms" in headers:
        try:
            return min(float(headers["retry-after-ms"]) / 1000, MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_SECONDS)
    except ValueError:
        moment = email.utils.parsedate_to_datetime(value)
        return min(max(moment.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_SECONDS)


def from_status(
    provider: str, status: int, message: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """The error for an HTTP status a provider answered with."""
    text = f"{provider}: {status} {message}".strip()
    if status == 429:
        return ProviderRateLimited(text, retry_after=retry_after(headers or {}))
    if status == 408 or status >= 500:
        return ProviderServerError(text)
    return ProviderBadRequest(text)


def from_sdk(provider: str, exc: Exception, sdk: ModuleType) -> ProviderError:
    """An error of the official `openai` or `anthropic` package: both SDKs are generated from
    one template and share these exception classes."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderTimeout(f"{provider}: {exc}")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderConnectionError(f"{provider}: {exc}")
    if isinstance(exc, sdk.APIStatusError):
        return from_status(provider, exc.status_code, exc.message, exc.response.headers)
    return ProviderError(f"{provider}: {exc}")
