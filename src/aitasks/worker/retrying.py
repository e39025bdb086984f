"""Retrying a database write through an outage, so a worker keeps a result it already has."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aitasks.backoff import backoff_seconds
from aitasks.errors import DatabaseUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a worker keeps trying to write one outcome before it gives up on it; the task is then
# run again by whoever claims it after its lease runs out.
DATABASE_RETRY_SECONDS = 300.0
FIRST_PAUSE_SECONDS = 0.5
LONGEST_PAUSE_SECONDS = 5.0


async def retry_database(
    operation: Callable[[], Awaitable[T]],
    what: str,
    *,
    within: float = DATABASE_RETRY_SECONDS,
) -> T:
    """Run `operation`, again and again while the database is unreachable, for up to `within`."""
    deadline = time.monotonic() + within
    tries = 0
    while True:
        tries += 1
        try:
            return await operation()
        except DatabaseUnavailable as exc:
            pause = backoff_seconds(
                tries, base=FIRST_PAUSE_SECONDS, cap=LONGEST_PAUSE_SECONDS, jitter=False
            )
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s: %s; retrying in %.1fs", what, exc.message, pause)
        await asyncio.sleep(pause)
