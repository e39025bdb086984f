"""The policy of the per-key limits, over counters kept in Redis (or memory).

- Requests per minute: a sliding window, estimated from this minute's count and the last one's
  weighted by how much of it still lies inside the window (two counters, not a log per request).
- Tasks in flight: the key's reservations, each scored. A submit reserves a slot (atomically with
  the check that one is free) under a ticket, before its task is written; the reservation carries
  a lease (`RESERVATION_LEASE_SECONDS`) while its request is in flight, and once the task is
  stored the ticket is confirmed as the task's id. Slots are freed when tasks end (or the request
  is refused). Should a release be missed (a process died between the two), the set only errs
  high: a key refused for it has its confirmed ids and its lapsed leases checked against the
  database, and those that have finished (or were never stored) are dropped; a reservation still
  inside its lease is never dropped, since its task may be about to be stored. A drop only
  happens if the entry is still as it was read, so a slot re-taken meanwhile stays counted.
- Tokens per day (UTC): admission reserves the task's estimated tokens (limits/tokens.py) on the
  day's count, atomically with the check that the key has not reached its quota, and the task's
  end settles it: the estimate is given back and the real usage counted. Parallel submits thus
  see each other's reservations, and the overshoot is bounded by what tasks use past their
  estimates, instead of by how many submits arrive at once.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aitasks.auth.caller import KeyInfo
from aitasks.errors import RateLimited

WINDOW_SECONDS = 60
# How long a reservation is kept whatever the database says, while its request writes the task:
# longer than a submit's write can take (a connection's and the pool's timeouts), so that a
# refused submit's clean-up never drops the slot of a task about to be stored. A gateway that
# dies mid-submit leaves a slot taken this long at most.
RESERVATION_LEASE_SECONDS = 120.0
# How many past days a reservation may be settled on: reservations are kept two days.
SETTLE_DAYS = 3

# What a reservation came to: taken, or refused for which limit.
TAKEN, NO_TOKENS, NO_SLOT = "ok", "tokens", "inflight"


@dataclass(frozen=True, slots=True)
class Reservation:
    """What admission asks the counters to take for one ticket, all or nothing."""

    ticket: str
    # Until when the slot is kept whatever the database says (epoch seconds).
    lease_until: float
    # None: the key has no such limit, and nothing is counted for it.
    max_inflight: int | None
    daily_tokens: int | None
    # The day (UTC, YYYY-MM-DD) and the tokens reserved on it.
    day: str
    tokens: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """What ending tasks (or refused requests) give back. `days`: today first, then the days
    before it on which their reservations may have been made."""

    ids: Collection[str]
    # Give the reserved tokens back (False: they stay counted, the best guess of what was used).
    refund: bool
    # Real tokens to count today.
    tokens: int
    days: tuple[str, ...]


class Counters(ABC):
    """Where the counts live. Each method is one atomic step on the shared store."""

    @abstractmethod
    async def count_request(
        self, key_id: str, minute: int, limit: int, previous_weight: float
    ) -> tuple[bool, int, int]:
        """Count a request unless this minute's count plus the weighted last minute's reach
        `limit`. Returns (counted, this minute's count, the last minute's count)."""

    @abstractmethod
    async def reserve(self, key_id: str, wanted: Reservation) -> tuple[str, int]:
        """Refuse (`NO_TOKENS`) when the day's tokens have reached the quota, or (`NO_SLOT`) when
        the key's in-flight set is full; else add the ticket to the set, scored by its lease, and
        its tokens to the day's count, held under the ticket. Returns (`TAKEN` or the refusal,
        the day's tokens)."""

    @abstractmethod
    async def confirm(
        self, key_id: str, ticket: str, task_id: str, stored_at: float, *, counted: bool
    ) -> None:
        """The ticket's task is stored: the ticket leaves the set and, when the key's tasks in
        flight are `counted`, `task_id` is in it (even if the ticket's lease had lapsed), scored
        `-stored_at` (checked against the database whenever the key is full); the ticket's held
        tokens are the task's."""

    @abstractmethod
    async def inflight(self, key_id: str) -> dict[str, float]:
        """The key's set: each ticket or task id with its score."""

    @abstractmethod
    async def forget(self, key_id: str, entries: Mapping[str, float]) -> None:
        """Drop each entry that still has the score given (its held tokens stay counted)."""

    @abstractmethod
    async def settle(self, key_id: str, settlement: Settlement) -> None:
        """Drop the ids from the set and their held tokens (given back to the day they were
        reserved on, when `refund`), and count `tokens` today, in one step."""

    @abstractmethod
    async def tokens_used(self, key_id: str, day: str) -> int: ...

    async def warm(self) -> None:  # noqa: B027 - optional hook; memory is ready
        """Connect and load scripts before serving (see `redis_connect.warm`)."""

    async def close(self) -> None:  # noqa: B027 - optional hook; memory holds nothing to close
        pass


def _today(epoch: float) -> tuple[str, float]:
    """The date (UTC) at `epoch` and the seconds left until the next day."""
    now = datetime.fromtimestamp(epoch, UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return now.strftime("%Y-%m-%d"), (tomorrow - now).total_seconds()


def _days(epoch: float) -> tuple[str, ...]:
    """Today and the days before it on which a reservation still held may have been made."""
    now = datetime.fromtimestamp(epoch, UTC)
    return tuple((now - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(SETTLE_DAYS))


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
        ticket: str,
        unfinished: Callable[[list[str]], Awaitable[Collection[str]]],
        *,
        tokens: int = 0,
    ) -> None:
        """Reserve a slot in flight and `tokens` of the day's quota for `ticket` (a new task's
        id, or a fresh one for a retry), or refuse it naming the limit. `unfinished` answers
        which of some task ids have not finished (from the database)."""
        if key.max_inflight is None and key.daily_tokens is None:
            return
        now = self.clock()
        day, left = _today(now)
        wanted = Reservation(
            ticket=ticket,
            lease_until=now + RESERVATION_LEASE_SECONDS,
            max_inflight=key.max_inflight,
            daily_tokens=key.daily_tokens,
            day=day,
            tokens=max(0, tokens) if key.daily_tokens is not None else 0,
        )
        outcome, used = await self.counters.reserve(key.id, wanted)
        if outcome == NO_SLOT:
            # Full: drop the entries whose end was never counted, then try once more.
            await self._drop_ended(key.id, unfinished)
            outcome, used = await self.counters.reserve(key.id, wanted)
        if outcome == TAKEN:
            return
        if outcome == NO_TOKENS:
            raise RateLimited(
                f"daily token quota reached: this key used or reserved {used} of its "
                f"{key.daily_tokens} tokens today (UTC)",
                retry_after=max(1, math.ceil(left)),
                limit="daily_tokens",
            )
        raise RateLimited(
            f"in-flight limit reached: this key may have {key.max_inflight} unfinished tasks",
            retry_after=1,
            limit="max_inflight",
        )

    async def _drop_ended(
        self, key_id: str, unfinished: Callable[[list[str]], Awaitable[Collection[str]]]
    ) -> None:
        """Drop the set's confirmed ids and lapsed reservations that the database says are not
        unfinished tasks; a reservation inside its lease stays whatever the database says."""
        now = self.clock()
        checkable = {m: s for m, s in (await self.counters.inflight(key_id)).items() if s < now}
        if not checkable:
            return
        still = set(await unfinished(list(checkable)))
        ended = {m: s for m, s in checkable.items() if m not in still}
        if ended:
            await self.counters.forget(key_id, ended)

    async def confirm(self, key: KeyInfo, ticket: str, task_id: str) -> None:
        """The ticket's task is stored: its slot and tokens are the task's from now on."""
        if key.max_inflight is None and key.daily_tokens is None:
            return
        await self.counters.confirm(
            key.id, ticket, task_id, self.clock(), counted=key.max_inflight is not None
        )

    async def release(self, key_id: str, task_ids: Collection[str], *, refund: bool = True) -> None:
        """The tasks have ended (or were never stored, or the tickets were refused): they no
        longer count as in flight, and their reserved tokens are given back (`refund`) or stay
        counted (a task stopped while it ran: the provider was at work, the estimate the best
        guess of what it used)."""
        if task_ids:
            await self._settle(key_id, task_ids, refund=refund, tokens=0)

    async def settle(self, key_id: str, task_id: str, tokens: int) -> None:
        """The task has ended having used `tokens`: its slot is freed, its reservation given
        back and its real usage counted, in one step."""
        await self._settle(key_id, [task_id], refund=True, tokens=max(0, tokens))

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        """Count tokens used today, outside any reservation."""
        if tokens > 0:
            await self._settle(key_id, [], refund=False, tokens=tokens)

    async def _settle(
        self, key_id: str, ids: Collection[str], *, refund: bool, tokens: int
    ) -> None:
        settlement = Settlement(ids=ids, refund=refund, tokens=tokens, days=_days(self.clock()))
        await self.counters.settle(key_id, settlement)

    async def tokens_used(self, key_id: str) -> int:
        """The tokens the key has used or reserved today (UTC)."""
        return await self.counters.tokens_used(key_id, _today(self.clock())[0])

    async def warm(self) -> None:
        await self.counters.warm()

    async def close(self) -> None:
        await self.counters.close()
