"""An event log that fails as an unreachable Redis does, for tests of a stream whose log goes."""

from __future__ import annotations

from collections.abc import Callable

from aitasks.errors import RedisUnavailable
from aitasks.events.base import Event
from aitasks.services import Services


def failing_reads(services: Services, *, after_calls: int) -> Callable[[], int]:
    """Make the event log's reads fail after `after_calls` calls: how many reads were made."""
    read = services.events.read
    calls = 0

    async def broken(task_id: str, *, after: str | None, wait_seconds: float) -> list[Event]:
        nonlocal calls
        calls += 1
        if calls > after_calls:
            raise RedisUnavailable("Redis is unreachable: Connection refused (the test's)")
        return await read(task_id, after=after, wait_seconds=wait_seconds)

    services.events.read = broken  # type: ignore[method-assign]
    return lambda: calls
