"""Limit counters in memory, for the embedded default's single process."""

from __future__ import annotations

from collections.abc import Collection

from aitasks.limits.base import Counters


class InProcessCounters(Counters):
    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], int] = {}
        self._inflight: dict[str, set[str]] = {}
        self._tokens: dict[tuple[str, str], int] = {}

    async def count_request(
        self, key_id: str, minute: int, limit: int, previous_weight: float
    ) -> tuple[bool, int, int]:
        current = self._requests.get((key_id, minute), 0)
        previous = self._requests.get((key_id, minute - 1), 0)
        if previous * previous_weight + current >= limit:
            return False, current, previous
        self._requests[(key_id, minute)] = current + 1
        # Older minutes no longer count.
        for stale in [k for k in self._requests if k[0] == key_id and k[1] < minute - 1]:
            del self._requests[stale]
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
