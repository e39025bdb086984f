"""Limit counters in memory, for the embedded default's single process. Each method runs to its
end without awaiting, so on the one event loop it is as atomic as the Redis scripts."""

from __future__ import annotations

from collections.abc import Mapping

from aitasks.limits.base import NO_SLOT, NO_TOKENS, TAKEN, Counters, Reservation, Settlement


class InProcessCounters(Counters):
    def __init__(self) -> None:
        self._requests: dict[str, dict[int, int]] = {}
        # Per key: ticket or task id -> score (a lease's end, or minus the time it was stored).
        self._inflight: dict[str, dict[str, float]] = {}
        self._tokens: dict[tuple[str, str], int] = {}
        # Tokens reserved per (key, ticket or task id): (the day, how many).
        self._held: dict[tuple[str, str], tuple[str, int]] = {}

    async def count_request(
        self, key_id: str, minute: int, limit: int, previous_weight: float
    ) -> tuple[bool, int, int]:
        counts = self._requests.setdefault(key_id, {})
        current, previous = counts.get(minute, 0), counts.get(minute - 1, 0)
        if previous * previous_weight + current >= limit:
            return False, current, previous
        # Only this minute and the last count; older ones go.
        self._requests[key_id] = {minute - 1: previous, minute: current + 1}
        return True, current + 1, previous

    async def reserve(self, key_id: str, wanted: Reservation) -> tuple[str, int]:
        day = (key_id, wanted.day)
        used = self._tokens.get(day, 0)
        if wanted.daily_tokens is not None and used >= wanted.daily_tokens:
            return NO_TOKENS, used
        if wanted.max_inflight is not None:
            members = self._inflight.setdefault(key_id, {})
            if wanted.ticket not in members and len(members) >= wanted.max_inflight:
                return NO_SLOT, used
            members[wanted.ticket] = wanted.lease_until
        if wanted.daily_tokens is not None and wanted.tokens > 0:
            used += wanted.tokens
            self._tokens[day] = used
            self._held[(key_id, wanted.ticket)] = (wanted.day, wanted.tokens)
        return TAKEN, used

    async def confirm(
        self, key_id: str, ticket: str, task_id: str, stored_at: float, *, counted: bool
    ) -> None:
        members = self._inflight.setdefault(key_id, {})
        if ticket != task_id:
            members.pop(ticket, None)
            held = self._held.pop((key_id, ticket), None)
            if held is not None:
                self._held[(key_id, task_id)] = held
        if counted:
            members[task_id] = -stored_at

    async def inflight(self, key_id: str) -> dict[str, float]:
        return dict(self._inflight.get(key_id, {}))

    async def forget(self, key_id: str, entries: Mapping[str, float]) -> None:
        members = self._inflight.get(key_id, {})
        for member, score in entries.items():
            if members.get(member) == score:
                del members[member]
                self._held.pop((key_id, member), None)

    async def settle(self, key_id: str, settlement: Settlement) -> None:
        members = self._inflight.get(key_id, {})
        for task_id in settlement.ids:
            members.pop(task_id, None)
            held = self._held.pop((key_id, task_id), None)
            if held is not None and settlement.refund:
                day, tokens = (key_id, held[0]), held[1]
                if day in self._tokens:
                    self._tokens[day] -= tokens
        if settlement.tokens > 0:
            today = (key_id, settlement.days[0])
            self._tokens[today] = self._tokens.get(today, 0) + settlement.tokens

    async def tokens_used(self, key_id: str, day: str) -> int:
        return self._tokens.get((key_id, day), 0)
