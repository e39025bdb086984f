"""How long to wait before trying again: one rule for provider retries, webhook deliveries and
database outages."""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: bool = True,
    at_least: float | None = None,
) -> float:
    """Exponential backoff: `base`, 2x, 4x, ... up to `cap`, for the wait after the `attempt`-th
    try (counting from 1). With `jitter` the wait is drawn uniformly below that bound ("full
    jitter"), so many clients that failed together do not come back together. Never less than
    `at_least` (a server's `Retry-After`)."""
    bound = min(cap, base * 2 ** (attempt - 1))
    delay = random.uniform(0, bound) if jitter else bound
    return max(delay, at_least or 0.0)
