"""Limit counters in Redis, shared by every gateway and worker. A key's counters carry the hash tag
`{k:<key id>}` (`redis_keys`), so on Redis Cluster each script's keys sit on one node. Each call
goes through the Redis boundary, so an unreachable Redis surfaces as `RedisUnavailable`."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aitasks.limits.base import WINDOW_SECONDS, Counters
from aitasks.redis_connect import RedisClient, connect, redis_boundary, redis_call
from aitasks.redis_keys import (
    TOKENS_TTL_SECONDS,
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
ADD_INFLIGHT = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[2])
return 1
"""


class RedisCounters(Counters):
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._count_request = redis.register_script(COUNT_REQUEST)
        self._add_inflight = redis.register_script(ADD_INFLIGHT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisCounters:
        return cls(connect(url, socket_timeout=5.0), prefix=prefix)

    async def count_request(
        self, key_id: str, minute: int, limit: int, previous_weight: float
    ) -> tuple[bool, int, int]:
        keys = [rpm_key(self.prefix, key_id, minute), rpm_key(self.prefix, key_id, minute - 1)]
        args: list[Any] = [limit, previous_weight, rpm_ttl_seconds(WINDOW_SECONDS)]
        counted, current, previous = await redis_call(
            lambda: self._count_request(keys=keys, args=args)
        )
        return bool(counted), int(current), int(previous)

    async def add_inflight(self, key_id: str, task_id: str, limit: int) -> bool:
        keys = [inflight_key(self.prefix, key_id)]
        added = await redis_call(lambda: self._add_inflight(keys=keys, args=[limit, task_id]))
        return bool(added)

    async def inflight(self, key_id: str) -> list[str]:
        members = await redis_call(lambda: self.redis.smembers(inflight_key(self.prefix, key_id)))
        return [str(m) for m in members]

    async def remove_inflight(self, key_id: str, task_ids: Collection[str]) -> None:
        ids = list(task_ids)
        if ids:
            await redis_call(lambda: self.redis.srem(inflight_key(self.prefix, key_id), *ids))

    async def tokens_used(self, key_id: str, day: str) -> int:
        used = await redis_call(lambda: self.redis.get(tokens_key(self.prefix, key_id, day)))
        return int(used or 0)

    async def add_tokens(self, key_id: str, day: str, tokens: int) -> None:
        key = tokens_key(self.prefix, key_id, day)
        with redis_boundary():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incrby(key, tokens)
                pipe.expire(key, TOKENS_TTL_SECONDS)
                await pipe.execute()

    async def close(self) -> None:
        await self.redis.aclose()
