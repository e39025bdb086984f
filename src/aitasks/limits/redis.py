"""Limit counters in Redis, shared by every gateway and worker. A key's counters carry the hash tag
`{k:<key id>}` (`redis_keys`), so on Redis Cluster each script's keys sit on one node. Each call
goes through the Redis boundary, so an unreachable Redis surfaces as `RedisUnavailable`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from aitasks.limits.base import WINDOW_SECONDS, Counters, Reservation, Settlement
from aitasks.redis_connect import RedisClient, connect, redis_call, warm
from aitasks.redis_keys import (
    TOKENS_TTL_SECONDS,
    held_tokens_key,
    inflight_key,
    rpm_key,
    rpm_ttl_seconds,
    tokens_key,
)

# Count a request unless the sliding estimate has reached the limit. Both minutes' keys in one step.
COUNT_REQUEST = """
local limit, weight, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous * weight + current >= limit then
  return {0, current, previous}
end
current = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ttl)
return {1, current, previous}
"""
# KEYS: the in-flight set, today's tokens, the ticket's held tokens.
# ARGV: max in flight (-1: none), ticket, lease end, quota (-1: none), tokens, day, ttl.
RESERVE = """
local limit, quota, tokens = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if quota >= 0 and used >= quota then
  return {'tokens', used}
end
if limit >= 0 then
  if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZCARD', KEYS[1]) >= limit then
    return {'inflight', used}
  end
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
end
if quota >= 0 and tokens > 0 then
  used = redis.call('INCRBY', KEYS[2], tokens)
  redis.call('EXPIRE', KEYS[2], ARGV[7])
  redis.call('SET', KEYS[3], ARGV[6] .. ' ' .. tokens, 'EX', ARGV[7])
end
return {'ok', used}
"""
# KEYS: the in-flight set, the ticket's held tokens, the task's. ARGV: ticket, task, score,
# counted ("1": the key's tasks in flight are limited).
CONFIRM = """
if ARGV[1] ~= ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('RENAME', KEYS[2], KEYS[3])
  end
end
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
end
return 1
"""
# KEYS: the in-flight set, then each entry's held tokens. ARGV: entry, score, entry, score, ...
FORGET = """
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('DEL', KEYS[(i + 1) / 2 + 1])
  end
end
return 1
"""
# KEYS: the in-flight set, the tokens of `ndays` days (today first), then each id's held tokens.
# ARGV: ndays, refund ("1"), tokens to count today, ttl, the days, then the ids.
SETTLE = """
local ndays = tonumber(ARGV[1])
local refund, add, ttl = ARGV[2] == '1', tonumber(ARGV[3]), ARGV[4]
local first_id, first_held = 5 + ndays, 2 + ndays
for i = first_id, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  local key = KEYS[first_held + i - first_id]
  local held = redis.call('GET', key)
  if held then
    redis.call('DEL', key)
    local day, tokens = string.match(held, '^(%S+) (%d+)$')
    for d = 1, ndays do
      if refund and ARGV[4 + d] == day and redis.call('EXISTS', KEYS[1 + d]) == 1 then
        redis.call('DECRBY', KEYS[1 + d], tokens)
      end
    end
  end
end
if add > 0 then
  redis.call('INCRBY', KEYS[2], add)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
"""


class RedisCounters(Counters):
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._count_request = redis.register_script(COUNT_REQUEST)
        self._reserve = redis.register_script(RESERVE)
        self._confirm = redis.register_script(CONFIRM)
        self._forget = redis.register_script(FORGET)
        self._settle = redis.register_script(SETTLE)

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisCounters:
        return cls(connect(url, socket_timeout=5.0), prefix=prefix)

    async def warm(self) -> None:
        scripts = (self._count_request, self._reserve, self._confirm, self._forget, self._settle)
        await warm(self.redis, scripts)

    async def count_request(
        self, key_id: str, minute: int, limit: int, previous_weight: float
    ) -> tuple[bool, int, int]:
        keys = [rpm_key(self.prefix, key_id, minute), rpm_key(self.prefix, key_id, minute - 1)]
        args: list[Any] = [limit, previous_weight, rpm_ttl_seconds(WINDOW_SECONDS)]
        counted, current, previous = await redis_call(
            lambda: self._count_request(keys=keys, args=args)
        )
        return bool(counted), int(current), int(previous)

    async def reserve(self, key_id: str, wanted: Reservation) -> tuple[str, int]:
        keys = [
            inflight_key(self.prefix, key_id),
            tokens_key(self.prefix, key_id, wanted.day),
            held_tokens_key(self.prefix, key_id, wanted.ticket),
        ]
        args: list[Any] = [
            -1 if wanted.max_inflight is None else wanted.max_inflight,
            wanted.ticket,
            repr(wanted.lease_until),
            -1 if wanted.daily_tokens is None else wanted.daily_tokens,
            wanted.tokens,
            wanted.day,
            TOKENS_TTL_SECONDS,
        ]
        outcome, used = await redis_call(lambda: self._reserve(keys=keys, args=args))
        return _text(outcome), int(used)

    async def confirm(
        self, key_id: str, ticket: str, task_id: str, stored_at: float, *, counted: bool
    ) -> None:
        keys = [
            inflight_key(self.prefix, key_id),
            held_tokens_key(self.prefix, key_id, ticket),
            held_tokens_key(self.prefix, key_id, task_id),
        ]
        args: list[Any] = [ticket, task_id, repr(-stored_at), "1" if counted else "0"]
        await redis_call(lambda: self._confirm(keys=keys, args=args))

    async def inflight(self, key_id: str) -> dict[str, float]:
        entries = await redis_call(
            lambda: self.redis.zrange(inflight_key(self.prefix, key_id), 0, -1, withscores=True)
        )
        # With scores, each entry is (member, score).
        pairs = cast(list[tuple[str | bytes, float]], entries)
        return {_text(member): float(score) for member, score in pairs}

    async def forget(self, key_id: str, entries: Mapping[str, float]) -> None:
        if not entries:
            return
        keys = [inflight_key(self.prefix, key_id)]
        keys += [held_tokens_key(self.prefix, key_id, member) for member in entries]
        args: list[Any] = []
        for member, score in entries.items():
            args += [member, repr(score)]
        await redis_call(lambda: self._forget(keys=keys, args=args))

    async def settle(self, key_id: str, settlement: Settlement) -> None:
        ids = list(settlement.ids)
        days = list(settlement.days)
        keys = [inflight_key(self.prefix, key_id)]
        keys += [tokens_key(self.prefix, key_id, day) for day in days]
        keys += [held_tokens_key(self.prefix, key_id, task_id) for task_id in ids]
        args: list[Any] = [
            len(days),
            "1" if settlement.refund else "0",
            settlement.tokens,
            TOKENS_TTL_SECONDS,
            *days,
            *ids,
        ]
        await redis_call(lambda: self._settle(keys=keys, args=args))

    async def tokens_used(self, key_id: str, day: str) -> int:
        used = await redis_call(lambda: self.redis.get(tokens_key(self.prefix, key_id, day)))
        return int(used or 0)

    async def close(self) -> None:
        await self.redis.aclose()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
