"""Redis Streams queues: one stream per queue, one consumer group, XREADGROUP / XACK / XAUTOCLAIM.

Unlike `BRPOP` on a list, an entry read from a stream stays in the group's pending list until it is
acknowledged, so a worker that dies holding a task leaves it there for another to claim.

XREADGROUP's COUNT bounds each stream, not the read: one read of k streams may hand out k times
the count, more than the worker has slots for, and what it hands out is this consumer's until
acknowledged or, after `redeliver_after`, reclaimed. So a read of k streams asks each for
`count // k`, or, with fewer slots free than streams, takes them one after another inside a
script, each for what the count has left (see `receive`); what a receive does not take is never
read, and stays in the stream for whichever worker asks next.

On Redis Cluster every command touches keys of one hash slot (each queue's keys share the tag
`{q:<queue>}`), pipelines are non-transactional so the client splits them by node, and queues on
different slots are read one slot at a time (see `receive`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import RedisCluster

from aitasks.errors import RedisUnavailable
from aitasks.queue.base import Delivery, RateSlot, TaskQueue
from aitasks.redis_connect import RedisClient, connect, redis_boundary, redis_call
from aitasks.redis_keys import (
    CONSUMER_GROUP,
    TASK_FIELD,
    TRACE_FIELD,
    cancel_channel,
    lock_key,
    rate_key,
    stream_key,
    worker_key,
    workers_key,
)

log = logging.getLogger(__name__)

# Pause before a dropped pub/sub subscription is made again.
RESUBSCRIBE_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 30.0

# A sliding-window rate limit in one atomic step, timed by the Redis server's clock (so workers on
# several machines agree); see `TaskQueue.rate_slot`. A slot in flight is scored by when its hold
# ends (so no window drops it), a dated one by when its call reached the provider. Returns 0 when
# the slot is taken, else the seconds until one may free (an undated slot frees one window after
# it is dated, no sooner than now). The key lasts one window past its latest score.
RATE_SLOT_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local window, limit, held = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + held, ARGV[3])
  local latest = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIRE', KEYS[1], math.ceil((latest - now + window) * 1000))
  return '0'
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
return tostring(math.min(oldest, now) + window - now)
"""
# Dates a slot to the server's now: its call has reached the provider. (A slot dropped meanwhile,
# its hold long over, is counted again: the call did reach the provider now.)
RATE_REACHED_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[2])
local latest = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIRE', KEYS[1], math.ceil((latest - now + window) * 1000))
return 1
"""
# New entries of several streams of one slot, in the order given, `ARGV[3]` in all at most (a
# script, so XREADGROUP's per-stream COUNT never takes more). Returns {read, last}: `read` holds
# {stream, entries} for each stream that gave some; when none did, `last` holds each stream's
# last-delivered id, from which a plain XREAD can wait for the next entry without taking it.
READ_SCRIPT = """
local group, consumer, left = ARGV[1], ARGV[2], tonumber(ARGV[3])
local read, last = {}, {}
for _, key in ipairs(KEYS) do
  if left <= 0 then break end
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left, 'STREAMS', key, '>')
  if got then
    left = left - #got[1][2]
    table.insert(read, {key, got[1][2]})
  end
end
if #read == 0 then
  for _, key in ipairs(KEYS) do
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local fields = {}
      for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
      if fields['name'] == group then table.insert(last, {key, fields['last-delivered-id']}) end
    end
  end
end
return {read, last}
"""
# Entries read per XRANGE page when listing what a stream holds.
SCAN_PAGE = 1000


class RedisStreamQueue(TaskQueue):
    """Task queues on Redis Streams."""

    def __init__(self, redis: RedisClient, *, prefix: str, redeliver_after: float) -> None:
        super().__init__(redeliver_after=redeliver_after)
        self.redis = redis
        self.prefix = prefix
        self._groups: set[str] = set()
        self._last_reclaim = 0.0
        # Where each stream's XAUTOCLAIM scan goes on from: one call looks at a bounded stretch
        # of the pending list, so starting at 0-0 each time could miss entries further back.
        self._reclaim_from: dict[str, str] = {}
        # Which queue a read of several starts at, turning each call so none waits behind another.
        self._turn = 0

    @classmethod
    def from_url(cls, url: str, *, prefix: str, redeliver_after: float) -> RedisStreamQueue:
        # The socket timeout outlasts any blocking read the workers make, or those would time out.
        redis = connect(url, socket_timeout=SOCKET_TIMEOUT_SECONDS)
        return cls(redis, prefix=prefix, redeliver_after=redeliver_after)

    def _key(self, queue: str) -> str:
        return stream_key(self.prefix, queue)

    async def _ensure_group(self, key: str) -> None:
        if key in self._groups:
            return
        try:
            # Id 0, not $: entries published before the group existed must be read too.
            await redis_call(
                lambda: self.redis.xgroup_create(key, CONSUMER_GROUP, "0", mkstream=True)
            )
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(key)

    async def publish(self, queue: str, task_id: str, *, trace: str | None = None) -> None:
        key = self._key(queue)
        fields: dict[Any, Any] = {TASK_FIELD: task_id}
        if trace:
            fields[TRACE_FIELD] = trace
        await redis_call(lambda: self.redis.xadd(key, fields))

    async def receive(
        self, queues: Sequence[str], consumer: str, *, count: int, wait_seconds: float
    ) -> list[Delivery]:
        if count <= 0:
            return []
        keys = {self._key(q): q for q in queues}
        for key in keys:
            await self._ensure_group(key)
        try:
            deliveries = await self._reclaim(keys, consumer, count)
            if deliveries:
                return deliveries
            block_ms = max(1, int(wait_seconds * 1000))
            self._turn = (self._turn + 1) % len(keys)
            ordered = list(keys)[self._turn :] + list(keys)[: self._turn]
            slots = self._by_slot({key: keys[key] for key in ordered})
            if len(slots) == 1 and count >= len(keys):
                # One blocking XREADGROUP, as cheap as waiting gets, taking at most `count` in
                # all: COUNT bounds each stream, so `count // k` from each of k streams.
                return await self._read(keys, consumer, count // len(keys), block_ms)
            # Fewer slots free than streams, or streams on several cluster slots: take what is
            # there, stream after stream (each slot in one script call), up to `count` in all;
            # else wait, consuming nothing, until some stream has new entries, and take again.
            # (A blocking read per slot could not be called off once another returned.) The
            # order turns at each call, so no queue waits behind another.
            deliveries, last = await self._read_each(slots, consumer, count)
            if not deliveries:
                woken = await self._wait_for_entries(slots, last, block_ms)
                if woken:
                    # The slots that woke first: they hold what the wait was for.
                    rest = [keys for keys in slots if keys not in woken]
                    deliveries, _ = await self._read_each(woken + rest, consumer, count)
            return deliveries
        except redis_errors.ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no such key" not in str(exc):
                raise
            # Redis restarted empty (or the stream was deleted): make the groups again next call.
            self._groups.clear()
            return []

    def _by_slot(self, keys: dict[str, str]) -> list[dict[str, str]]:
        """`keys` split into the sets one command may touch together, in their order: all of them
        on one server, one set per hash slot on a cluster."""
        if not isinstance(self.redis, RedisCluster):
            return [keys]
        slots: dict[int, dict[str, str]] = {}
        for key, queue in keys.items():
            slots.setdefault(self.redis.keyslot(key), {})[key] = queue
        return list(slots.values())

    async def _read(
        self, keys: dict[str, str], consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """New entries of streams in one slot, up to `count` from each, waiting up to `block_ms`
        for one."""
        read: Any = await redis_call(
            lambda: self.redis.xreadgroup(
                CONSUMER_GROUP, consumer, dict.fromkeys(keys, ">"), count=count, block=block_ms
            )
        )
        return [
            self._delivery(keys[key], message_id, fields)
            for key, entries in (read or [])
            for message_id, fields in entries
        ]

    async def _read_each(
        self, slots: list[dict[str, str]], consumer: str, count: int
    ) -> tuple[list[Delivery], dict[str, str]]:
        """What the streams hold for the group now, in order, up to `count` in all, not waiting;
        when they hold nothing, also each stream's last-delivered id (see `READ_SCRIPT`)."""
        deliveries: list[Delivery] = []
        last: dict[str, str] = {}
        for keys in slots:
            wanted = count - len(deliveries)
            answer: Any = await redis_call(
                lambda keys=keys, wanted=wanted: self.redis.eval(  # type: ignore[misc]
                    READ_SCRIPT, len(keys), *keys, CONSUMER_GROUP, consumer, wanted
                )
            )
            read, delivered = answer
            deliveries += [
                self._delivery(keys[key], message_id, _fields(flat))
                for key, entries in read
                for message_id, flat in entries
            ]
            last.update((key, message_id) for key, message_id in delivered)
            if len(deliveries) >= count:
                break
        return deliveries, last

    async def _wait_for_entries(
        self, slots: list[dict[str, str]], last: dict[str, str], block_ms: int
    ) -> list[dict[str, str]]:
        """Wait up to `block_ms` until a stream holds an entry after `last` (its last-delivered
        id), which the group has not handed out; the slots where one came (none on timeout).
        Plain XREADs take nothing, so the ones still waiting when another returns can be
        cancelled."""
        if any(key not in last for keys in slots for key in keys):
            return []  # a group vanished meanwhile: the next call makes it again

        async def wait(keys: dict[str, str]) -> bool:
            found: Any = await redis_call(
                lambda: self.redis.xread({k: last[k] for k in keys}, count=1, block=block_ms)
            )
            return bool(found)

        if len(slots) == 1:
            return slots if await wait(slots[0]) else []
        waits = [asyncio.ensure_future(wait(keys)) for keys in slots]
        try:
            pending: set[asyncio.Future[bool]] = set(waits)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                woken = [
                    keys for keys, w in zip(slots, waits, strict=True) if w in done and w.result()
                ]
                if woken:
                    return woken
            return []
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _reclaim(self, keys: dict[str, str], consumer: str, count: int) -> list[Delivery]:
        """Take over entries whose consumer has not touched them for `redeliver_after` seconds."""
        now = time.monotonic()
        if now - self._last_reclaim < self.redeliver_after / 4:
            return []
        self._last_reclaim = now
        idle_ms = int(self.redeliver_after * 1000)
        deliveries: list[Delivery] = []
        for key, queue in keys.items():
            wanted = count - len(deliveries)
            start = self._reclaim_from.get(key, "0-0")
            claimed: Any = await redis_call(
                lambda key=key, wanted=wanted, start=start: self.redis.xautoclaim(  # type: ignore[misc]
                    key, CONSUMER_GROUP, consumer, idle_ms, start, count=wanted
                )
            )
            self._reclaim_from[key] = claimed[0]  # "0-0" again once the scan has wrapped
            deliveries += [
                self._delivery(queue, message_id, fields)
                for message_id, fields in claimed[1]
                if fields  # an entry deleted meanwhile comes back without its fields
            ]
            if len(deliveries) >= count:
                break
        return deliveries

    @staticmethod
    def _delivery(queue: str, message_id: str, fields: dict[str, str]) -> Delivery:
        return Delivery(queue, fields[TASK_FIELD], message_id, fields.get(TRACE_FIELD))

    async def touch(self, delivery: Delivery, consumer: str) -> None:
        key = self._key(delivery.queue)
        # XCLAIM with min-idle 0 resets the entry's idle time, so nobody reclaims it meanwhile.
        await redis_call(
            lambda: self.redis.xclaim(
                key, CONSUMER_GROUP, consumer, 0, [delivery.message_id], justid=True
            )
        )

    async def ack(self, delivery: Delivery) -> None:
        key = self._key(delivery.queue)

        async def ack_and_delete() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xack(key, CONSUMER_GROUP, delivery.message_id)
                pipe.xdel(key, delivery.message_id)  # keeps the stream as short as its backlog
                await pipe.execute()

        await redis_call(ack_and_delete)

    async def depth(self, queue: str) -> int:
        key = self._key(queue)
        return int(await redis_call(lambda: self.redis.xlen(key)))

    async def queued_task_ids(self, queue: str) -> set[str]:
        key, start = self._key(queue), "-"
        ids: set[str] = set()
        while True:
            page: Any = await redis_call(
                lambda start=start: self.redis.xrange(key, start, "+", count=SCAN_PAGE)  # type: ignore[misc]
            )
            ids.update(fields[TASK_FIELD] for _, fields in page if TASK_FIELD in fields)
            if len(page) < SCAN_PAGE:
                return ids
            start = "(" + page[-1][0]

    async def try_lock(self, name: str, seconds: float) -> bool:
        key = lock_key(self.prefix, name)
        taken = await redis_call(lambda: self.redis.set(key, "1", nx=True, px=int(seconds * 1000)))
        return bool(taken)

    async def rate_slot(
        self, name: str, limit: int, per_seconds: float, *, held_for: float
    ) -> RateSlot | float:
        key, member = rate_key(self.prefix, name), uuid.uuid4().hex
        wait = await redis_call(
            lambda: self.redis.eval(RATE_SLOT_SCRIPT, 1, key, per_seconds, limit, member, held_for)
        )
        if float(wait) <= 0:
            return RateSlot(name, member, per_seconds)
        return float(wait)

    async def rate_slot_reached(self, slot: RateSlot) -> None:
        key = rate_key(self.prefix, slot.name)
        await redis_call(
            lambda: self.redis.eval(RATE_REACHED_SCRIPT, 1, key, slot.per_seconds, slot.member)
        )

    async def beat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        async def write() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(worker_key(self.prefix, worker_id), json.dumps(info), px=int(ttl * 1000))
                pipe.zadd(workers_key(self.prefix), {worker_id: time.time() + ttl})
                await pipe.execute()

        await redis_call(write)

    async def workers(self) -> list[dict[str, Any]]:
        index = workers_key(self.prefix)

        async def read() -> list[Any]:
            await self.redis.zremrangebyscore(index, "-inf", time.time())
            ids: list[str] = await self.redis.zrange(index, 0, -1)  # type: ignore[assignment]
            if not ids:
                return []
            # GETs in a pipeline rather than one MGET: each worker's key may be on another slot.
            async with self.redis.pipeline(transaction=False) as pipe:
                for worker_id in ids:
                    pipe.get(worker_key(self.prefix, worker_id))
                return list(await pipe.execute())

        return [json.loads(raw) for raw in await redis_call(read) if raw]

    async def announce_cancel(self, task_id: str) -> None:
        channel = cancel_channel(self.prefix)
        await redis_call(lambda: self.redis.publish(channel, task_id))

    async def cancellations(self) -> AsyncIterator[str]:
        channel = cancel_channel(self.prefix)
        # On a cluster the subscription is made on one node; PUBLISH reaches every node's
        # subscribers, so that is enough.
        while True:
            try:
                with redis_boundary():
                    if isinstance(self.redis, RedisCluster):
                        # A cluster pubsub picks its node from the slot map, which the client
                        # only loads on its first command; this may be the first.
                        await self.redis.initialize()
                    async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                        await pubsub.subscribe(channel)
                        async for message in pubsub.listen():
                            if message["type"] == "message":
                                yield str(message["data"])
            except RedisUnavailable as exc:
                log.warning("cancel announcements lost (%s); subscribing again", exc)
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def ping(self) -> None:
        await redis_call(self.redis.ping)

    async def close(self) -> None:
        await self.redis.aclose()


def _fields(flat: list[str]) -> dict[str, str]:
    """An entry's fields as a script returns them (name, value, name, value...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
