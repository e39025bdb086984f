"""The policy of the per-key limits, over counters kept in Redis (or memory).

- Requests per minute: a sliding window, estimated from this minute's count and the last one's
  weighted by how much of it still lies inside the window (two counters, not a log per request).
- Tasks in flight: a set of the key's unfinished task ids. Added to on submit, removed from when the
  task ends. Should a removal be missed (a process died between the two), the set only errs high:
  a key refused for it has its set checked against the database and the finished ids dropped.
- Tokens per day (UTC): a counter the worker adds each finished task's tokens to; a key at its
  quota is refused new tasks until midnight. Tasks already admitted may overshoot it.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta

from aitasks.auth.caller import KeyInfo
from aitasks.errors import RateLimited

WINDOW_SECONDS = 60


class Counters(ABC):
    """Where the counts live. Each method is one atomic step on the shared store."""

    @abstractmethod
    async def count_request(
        self, key_id: str, minute: int, limit: int, previous_weight: float
    ) -> tuple[bool, int, int]:
        """Count a request unless this minute's count plus the weighted last minute's reach
        `limit`. Returns (counted, this minute's count, the last minute's count)."""

    @abstractmethod
    async def add_inflight(self, key_id: str, task_id: str, limit: int) -> bool:
        """Add `task_id` to the key's set unless that holds `limit` ids already."""

    @abstractmethod
    async def inflight(self, key_id: str) -> list[str]: ...

    @abstractmethod
    async def remove_inflight(self, key_id: str, task_ids: Collection[str]) -> None: ...

    @abstractmethod
    async def tokens_used(self, key_id: str, day: str) -> int: ...

    @abstractmethod
    async def add_tokens(self, key_id: str, day: str, tokens: int) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook; memory holds nothing to close
        pass


def _today(epoch: float) -> tuple[str, float]:
    """The date (UTC) at `epoch` and the seconds left until the next day."""
    now = datetime.fromtimestamp(epoch, UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return now.strftime("%Y-%m-%d"), (tomorrow - now).total_seconds()


class Limits:
    def __init__(self, counters: Counters, *, clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.clock = clock  # epoch seconds; a test's own clock crosses minutes without waiting

    async def take_request(self, key: KeyInfo) -> None:
        """Count one request against the key's requests per minute, or refuse it."""
        if key.rpm is None:
            return
        now = self.clock()
        minute, into = divmod(now, WINDOW_SECONDS)
        weight = 1 - into / WINDOW_SECONDS
        counted, current, previous = await self.counters.count_request(
            key.id, int(minute), key.rpm, weight
        )
        if counted:
            return
        if current >= key.rpm:
            wait = WINDOW_SECONDS - into  # nothing frees up before this minute is over
        else:
            # The last minute's share shrinks as the window slides past it.
            wait = WINDOW_SECONDS * (1 - (key.rpm - current) / previous) - into
        raise RateLimited(
            f"rate limit reached: this key may make {key.rpm} requests per minute",
            retry_after=max(1, math.ceil(wait)),
            limit="rpm",
        )

    async def admit(
        self,
        key: KeyInfo,
        task_id: str,
        unfinished: Callable[[list[str]], Awaitable[Collection[str]]],
    ) -> None:
        """Count a new task against the key's tasks in flight, or refuse it. `unfinished`
        answers which of some task ids have not finished (from the database)."""
        if key.max_inflight is None:
            return
        if await self.counters.add_inflight(key.id, task_id, key.max_inflight):
            return
        # Full: drop ids whose end was never counted, then try once more.
        members = await self.counters.inflight(key.id)
        still = set(await unfinished(members))
        await self.counters.remove_inflight(key.id, [m for m in members if m not in still])
        if await self.counters.add_inflight(key.id, task_id, key.max_inflight):
            return
        raise RateLimited(
            f"in-flight limit reached: this key may have {key.max_inflight} unfinished tasks",
            retry_after=1,
            limit="max_inflight",
        )

    async def release(self, key_id: str, task_ids: Collection[str]) -> None:
        """The tasks have ended (or were never stored): they no longer count as in flight."""
        if task_ids:
            await self.counters.remove_inflight(key_id, task_ids)

    async def check_tokens(self, key: KeyInfo) -> None:
        """Refuse new tasks once the key has used its tokens for the day."""
        if key.daily_tokens is None:
            return
        day, left = _today(self.clock())
        used = await self.counters.tokens_used(key.id, day)
        if used >= key.daily_tokens:
            raise RateLimited(
                f"daily token quota reached: this key used {used} of its {key.daily_tokens} "
                "tokens today (UTC)",
                retry_after=max(1, math.ceil(left)),
                limit="daily_tokens",
            )

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        if tokens > 0:
            await self.counters.add_tokens(key_id, _today(self.clock())[0], tokens)

    async def close(self) -> None:
        await self.counters.close()
