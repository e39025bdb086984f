"""Event logs on Redis Streams: one capped stream per task, readable from any gateway.

Every command touches one task's keys (tagged `{t:<task>}`), so it works on Redis Cluster too. Each
call goes through `redis_boundary()`, so an unreachable Redis surfaces as `RedisUnavailable`.
On a single Redis, reads that wait go through one XREAD shared by the process
(`events.shared_read`); on a cluster, whose tasks' streams lie in different slots, each waits on
an XREAD of its own.
Appends run as one script, so the fence check (see `events.base`) and the write are one step:
nothing can be appended between a newer claim's fence and the check of an older one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import RedisCluster

from aitasks.events.base import (
    DONE,
    ENDED_ATTEMPT,
    FINISHED_LOG_TTL,
    MAX_EVENTS,
    Append,
    Event,
    EventLog,
    Fence,
)
from aitasks.events.shared_read import SharedReadRefused, SharedStreamReader, stream_position
from aitasks.redis_connect import RedisClient, connect, redis_boundary, redis_call, warm
from aitasks.redis_keys import (
    EVENT_DATA_FIELD,
    EVENT_TYPE_FIELD,
    LIVE_EVENTS_TTL_SECONDS,
    events_fence_key,
    events_key,
)

# Longer than any blocking read, or that read would time out.
SOCKET_TIMEOUT_SECONDS = 60.0

# KEYS: the log, its fence. ARGV: type field, data field, max length, whether this is the log's
# first write ('1'), the live and the finished TTL, the fence's run and attempt ('' for an unfenced
# write), the done type, the ended attempt, then (type, data) pairs. Refuses everything after a
# `done`, and a fenced write older than the log's fence; returns the new ids. The fence expires
# with its log.
APPEND = """
local log, fence = KEYS[1], KEYS[2]
local type_field, data_field, maxlen, first = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local live_ttl, finished_ttl, run, attempt = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local done, ended = ARGV[9], ARGV[10]
local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
if newest then
  local fields = newest[2]
  for i = 1, #fields, 2 do
    if fields[i] == type_field and fields[i + 1] == done then return {} end
  end
end
if run ~= '' then
  local held = redis.call('HMGET', fence, 'run', 'attempt')
  local held_run, held_attempt = tonumber(held[1]), tonumber(held[2])
  local r, a = tonumber(run), tonumber(attempt)
  if held_run and (r < held_run or (r == held_run and a < held_attempt)) then return {} end
  redis.call('HSET', fence, 'run', run, 'attempt', attempt)
end
local ids, finished = {}, false
for i = 11, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*',
                             type_field, ARGV[i], data_field, ARGV[i + 1])
  if ARGV[i] == done then finished = true; break end
end
if finished and redis.call('HEXISTS', fence, 'run') == 1 then
  redis.call('HSET', fence, 'attempt', ended)
end
local ttl = nil
if finished then ttl = finished_ttl elseif first == '1' then ttl = live_ttl end
if ttl then
  redis.call('EXPIRE', log, ttl)
  if redis.call('EXISTS', fence) == 1 then redis.call('EXPIRE', fence, ttl) end
elseif run ~= '' and redis.call('TTL', fence) == -1 then
  redis.call('EXPIRE', fence, live_ttl)
end
return ids
"""


class RedisEventLog(EventLog):
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._append = redis.register_script(APPEND)
        self._shared = None if isinstance(redis, RedisCluster) else SharedStreamReader(redis)

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisEventLog:
        return cls(connect(url, socket_timeout=SOCKET_TIMEOUT_SECONDS), prefix=prefix)

    async def warm(self) -> None:
        await warm(self.redis, (self._append,))

    async def append_many(
        self,
        task_id: str,
        events: list[tuple[str, dict[str, Any]]],
        *,
        first: bool = True,
        fence: Fence | None = None,
    ) -> list[str]:
        keys, args = self._script_call(Append(task_id, events, first, fence))
        ids: Any = await redis_call(lambda: self._append(keys=keys, args=args))
        return [str(event_id) for event_id in ids]

    async def append_batch(self, appends: Sequence[Append]) -> list[list[str] | Exception]:
        # One pipeline of EVALSHAs; one that finds the script missing (Redis restarted) is sent
        # again alone once the script is loaded, so none is written twice.
        calls = [self._script_call(a) for a in appends]
        if len(calls) == 1:
            # A lone append (a streamed reply's next piece, at low load) as one EVALSHA: a
            # pipeline costs more to build and read for one command.
            try:
                return [[str(i) for i in await self._append_alone(*calls[0])]]
            except Exception as exc:
                return [exc]
        if isinstance(self.redis, RedisCluster):
            # A cluster client refuses scripts in a pipeline: side by side, one call each.
            sent = await asyncio.gather(
                *(self._append_alone(keys, args) for keys, args in calls), return_exceptions=True
            )
            alone: list[list[str] | Exception] = []
            for answer in sent:
                if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                    raise answer  # cancelled
                alone.append(answer if isinstance(answer, Exception) else [str(i) for i in answer])
            return alone

        async def send() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(self._append.sha, len(keys), *keys, *args)
                return list(await pipe.execute(raise_on_error=False))

        answers = await redis_call(send)
        results: list[list[str] | Exception] = []
        for (keys, args), answer in zip(calls, answers, strict=True):
            if isinstance(answer, redis_errors.NoScriptError):
                try:
                    answer = await self._append_alone(keys, args)
                except Exception as exc:
                    answer = exc
            if isinstance(answer, Exception):
                results.append(answer)
            else:
                results.append([str(event_id) for event_id in answer])
        return results

    async def _append_alone(self, keys: list[str], args: list[Any]) -> Any:
        return await redis_call(lambda: self._append(keys=keys, args=args))

    def _script_call(self, a: Append) -> tuple[list[str], list[Any]]:
        """The APPEND script's keys and arguments for one call."""
        # Every log expires; a finished task's sooner, once nobody is likely to read it. The
        # expiry is set by a log's first write and shortened by its `done`: the writes between
        # (a long reply's many deltas) need not send it again.
        fence = a.fence
        keys = [events_key(self.prefix, a.task_id), events_fence_key(self.prefix, a.task_id)]
        args: list[Any] = [
            EVENT_TYPE_FIELD, EVENT_DATA_FIELD, MAX_EVENTS, "1" if a.first else "0",
            LIVE_EVENTS_TTL_SECONDS, FINISHED_LOG_TTL,
            "" if fence is None else fence.run, "" if fence is None else fence.attempt,
            DONE, ENDED_ATTEMPT,
        ]  # fmt: skip
        for event_type, data in a.events:
            args += [event_type, json.dumps(data, ensure_ascii=False)]
        return keys, args

    async def read(self, task_id: str, *, after: str | None, wait_seconds: float) -> list[Event]:
        key = events_key(self.prefix, task_id)
        block = int(wait_seconds * 1000) if wait_seconds > 0 else None
        start = stream_position(after or "0-0")
        if block is not None and self._shared is not None and start is not None:
            with contextlib.suppress(SharedReadRefused):  # then alone, below
                shared = await self._shared.read(key, start, wait_seconds)
                return [_event(event_id, fields) for event_id, fields in shared]
        try:
            with redis_boundary():
                found: Any = await self.redis.xread({key: after or "0-0"}, block=block)
        except redis_errors.ResponseError:
            return []  # a malformed Last-Event-ID: nothing is after it
        return [
            _event(event_id, fields) for _, entries in (found or []) for event_id, fields in entries
        ]

    async def read_until(
        self, task_id: str, until: str, *, after: str | None, wait_seconds: float
    ) -> list[Event]:
        # Through the shared read, the waiter is handed its entries only once `until` comes:
        # each status before it would otherwise end the shared XREAD early to take it back in.
        start = stream_position(after or "0-0")
        if wait_seconds > 0 and self._shared is not None and start is not None:
            key = events_key(self.prefix, task_id)
            with contextlib.suppress(SharedReadRefused):  # then alone, as `read` does
                shared = await self._shared.read(key, start, wait_seconds, until=until)
                return [_event(event_id, fields) for event_id, fields in shared]
        return await super().read_until(task_id, until, after=after, wait_seconds=wait_seconds)

    async def last(self, task_id: str) -> Event | None:
        key = events_key(self.prefix, task_id)
        newest: Any = await redis_call(lambda: self.redis.xrevrange(key, count=1))
        return _event(*newest[0]) if newest else None

    async def reset(self, task_id: str) -> None:
        with redis_boundary():
            await self.redis.delete(events_key(self.prefix, task_id))

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()
        await self.redis.aclose()


def _event(event_id: str, fields: dict[str, str]) -> Event:
    return Event(event_id, fields[EVENT_TYPE_FIELD], json.loads(fields[EVENT_DATA_FIELD]))
