"""Limit counters in memory, for the embedded default's single process."""

from __future__ import annotations

from collections.abc import Collection

from aitasks.limits.base import Counters


class InProcessCounters(Counters):
    def __init__(self) -> None:
        self._requests: dict[str, dict[int, int]] = {}
        self._inflight: dict[str, set[str]] = {}
        self._tokens: dict[tuple[str, str], int] = {}

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

    async def add_inflight(self, key_id: str, task_id: str, limit: int) -> bool:
        members = self._inflight.setdefault(key_id, set())
        if len(members) >= limit:
            return False
        members.add(task_id)
        return True

    async def inflight(self, key_id: str) -> list[str]:
        return list(self._inflight.get(key_id, ()))

    async def remove_inflight(self, key_id: str, task_ids: Collection[str]) -> None:
        self._inflight.get(key_id, set()).difference_update(task_ids)

    async def tokens_used(self, key_id: str, day: str) -> int:
        return self._tokens.get((key_id, day), 0)

    async def add_tokens(self, key_id: str, day: str, tokens: int) -> None:
        self._tokens[(key_id, day)] = self._tokens.get((key_id, day), 0) + tokens
