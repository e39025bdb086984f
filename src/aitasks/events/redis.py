"""Event logs on Redis Streams: one capped stream per task, readable from any gateway.

Every command touches one task's key (tagged `{t:<task>}`), so it works on Redis Cluster too.
"""

from __future__ import annotations

import json
from typing import Any

from redis import exceptions as redis_errors

from aitasks.errors import RedisUnavailable
from aitasks.events.base import DONE, FINISHED_LOG_TTL, MAX_EVENTS, Event, EventLog
from aitasks.queue.keys import events_key
from aitasks.redis_connect import UNREACHABLE, RedisClient, connect

# Longer than any blocking read, or that read would time out.
SOCKET_TIMEOUT_SECONDS = 60.0


class RedisEventLog(EventLog):
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisEventLog:
        return cls(connect(url, socket_timeout=SOCKET_TIMEOUT_SECONDS), prefix=prefix)

    async def append(self, task_id: str, event_type: str, data: dict[str, Any]) -> str:
        key = events_key(self.prefix, task_id)
        fields = {"type": event_type, "data": json.dumps(data, ensure_ascii=False)}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, fields, maxlen=MAX_EVENTS, approximate=True)  # type: ignore[arg-type]
                # Every log expires; a finished task's sooner, once nobody is likely to read it.
                pipe.expire(key, FINISHED_LOG_TTL if event_type == DONE else 24 * 3600)
                event_id, _ = await pipe.execute()
        except UNREACHABLE as exc:
            raise RedisUnavailable(f"Redis is unreachable: {exc}") from exc
        return str(event_id)

    async def append_many(
        self, task_id: str, events: list[tuple[str, dict[str, Any]]], *, first: bool = True
    ) -> None:
        key = events_key(self.prefix, task_id)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event_type, data in events:
                    fields = {"type": event_type, "data": json.dumps(data, ensure_ascii=False)}
                    pipe.xadd(key, fields, maxlen=MAX_EVENTS, approximate=True)  # type: ignore[arg-type]
                # The log's expiry is set by its first write and shortened by its last: the
                # writes between (a long reply's many deltas) need not send it again.
                if any(event_type == DONE for event_type, _ in events):
                    pipe.expire(key, FINISHED_LOG_TTL)
                elif first:
                    pipe.expire(key, 24 * 3600)
                await pipe.execute()
        except UNREACHABLE as exc:
            raise RedisUnavailable(f"Redis is unreachable: {exc}") from exc

    async def read(self, task_id: str, *, after: str | None, wait_seconds: float) -> list[Event]:
        key = events_key(self.prefix, task_id)
        block = int(wait_seconds * 1000) if wait_seconds > 0 else None
        try:
            found: Any = await self.redis.xread({key: after or "0-0"}, block=block)
        except UNREACHABLE as exc:
            raise RedisUnavailable(f"Redis is unreachable: {exc}") from exc
        except redis_errors.ResponseError:
            return []  # a malformed Last-Event-ID: nothing is after it
        return [
            Event(id=event_id, type=fields["type"], data=json.loads(fields["data"]))
            for _, entries in (found or [])
            for event_id, fields in entries
        ]

    async def reset(self, task_id: str) -> None:
        try:
            await self.redis.delete(events_key(self.prefix, task_id))
        except UNREACHABLE as exc:
            raise RedisUnavailable(f"Redis is unreachable: {exc}") from exc

    async def close(self) -> None:
        await self.redis.aclose()
