"""Event logs on Redis Streams: one capped stream per task, readable from any gateway.

Every command touches one task's key (tagged `{t:<task>}`), so it works on Redis Cluster too. Each
call goes through `redis_boundary()`, so an unreachable Redis surfaces as `RedisUnavailable`.
"""

from __future__ import annotations

import json
from typing import Any

from redis import exceptions as redis_errors

from aitasks.events.base import DONE, FINISHED_LOG_TTL, MAX_EVENTS, Event, EventLog
from aitasks.redis_connect import RedisClient, connect, redis_boundary
from aitasks.redis_keys import (
    EVENT_DATA_FIELD,
    EVENT_TYPE_FIELD,
    LIVE_EVENTS_TTL_SECONDS,
    events_key,
)

# Longer than any blocking read, or that read would time out.
SOCKET_TIMEOUT_SECONDS = 60.0


def _fields(event_type: str, data: dict[str, Any]) -> dict[str, str]:
    """One event as the fields of its stream entry."""
    return {EVENT_TYPE_FIELD: event_type, EVENT_DATA_FIELD: json.dumps(data, ensure_ascii=False)}


class RedisEventLog(EventLog):
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisEventLog:
        return cls(connect(url, socket_timeout=SOCKET_TIMEOUT_SECONDS), prefix=prefix)

    async def append(self, task_id: str, event_type: str, data: dict[str, Any]) -> str:
        key = events_key(self.prefix, task_id)
        # Every log expires; a finished task's sooner, once nobody is likely to read it.
        ttl = FINISHED_LOG_TTL if event_type == DONE else LIVE_EVENTS_TTL_SECONDS
        with redis_boundary():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, _fields(event_type, data), maxlen=MAX_EVENTS, approximate=True)  # type: ignore[arg-type]
                pipe.expire(key, ttl)
                event_id, _ = await pipe.execute()
        return str(event_id)

    async def append_many(
        self, task_id: str, events: list[tuple[str, dict[str, Any]]], *, first: bool = True
    ) -> None:
        key = events_key(self.prefix, task_id)
        with redis_boundary():
            async with self.redis.pipeline(transaction=False) as pipe:
                for event_type, data in events:
                    pipe.xadd(key, _fields(event_type, data), maxlen=MAX_EVENTS, approximate=True)  # type: ignore[arg-type]
                # The log's expiry is set by its first write and shortened by its last: the
                # writes between (a long reply's many deltas) need not send it again.
                if any(event_type == DONE for event_type, _ in events):
                    pipe.expire(key, FINISHED_LOG_TTL)
                elif first:
                    pipe.expire(key, LIVE_EVENTS_TTL_SECONDS)
                await pipe.execute()

    async def read(self, task_id: str, *, after: str | None, wait_seconds: float) -> list[Event]:
        key = events_key(self.prefix, task_id)
        block = int(wait_seconds * 1000) if wait_seconds > 0 else None
        try:
            with redis_boundary():
                found: Any = await self.redis.xread({key: after or "0-0"}, block=block)
        except redis_errors.ResponseError:
            return []  # a malformed Last-Event-ID: nothing is after it
        return [
            Event(
                id=event_id,
                type=fields[EVENT_TYPE_FIELD],
                data=json.loads(fields[EVENT_DATA_FIELD]),
            )
            for _, entries in (found or [])
            for event_id, fields in entries
        ]

    async def reset(self, task_id: str) -> None:
        with redis_boundary():
            await self.redis.delete(events_key(self.prefix, task_id))

    async def close(self) -> None:
        await self.redis.aclose()
