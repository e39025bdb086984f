"""Redis Streams queues: one stream per queue, one consumer group, XREADGROUP / XACK / XAUTOCLAIM,
with the work waiting to be handed out kept in lanes before it (`queue/redis_scripts.py`).

Unlike `BRPOP` on a list, an entry read from a stream stays in the group's pending list until it is
acknowledged, so a worker that dies holding a task leaves it there for another to claim.

A publish puts the task id in its tenant's list in its lane (one script) and rings the queue's
bell. A receive is one script per hash slot that moves the entries it hands out, at most `count`
in all, from the lanes into the stream in the order `aitasks.priority` says, and reads exactly
those through the group: so the order is decided in one atomic step that every worker and gateway
shares, and what a receive does not take is never read (it stays for whichever worker asks
next). With nothing to take, a worker waits on the bells with a plain XREAD from the last id it
saw (which takes nothing), then takes again.

On Redis Cluster every command touches keys of one hash slot (each queue's keys share the tag
`{q:<queue>}`), pipelines are non-transactional so the client splits them by node, and queues on
different slots are read one slot at a time (see `receive`): lanes are then ordered within each
slot's queues, not across slots.
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
from aitasks.priority import LANES, Lane, Placement
from aitasks.queue.base import Delivery, RateSlot, TaskQueue
from aitasks.queue.redis_scripts import (
    PUBLISH_CHUNK,
    PUBLISH_SCRIPT,
    RATE_REACHED_SCRIPT,
    RATE_SLOT_SCRIPT,
    TAKE_SCRIPT,
)
from aitasks.redis_connect import RedisClient, connect, redis_boundary, redis_call, warm
from aitasks.redis_keys import (
    CONSUMER_GROUP,
    TASK_FIELD,
    TRACE_FIELD,
    bell_key,
    cancel_channel,
    lanes_key,
    lock_key,
    queue_key_base,
    rate_key,
    ring_key,
    stream_key,
    waiting_key,
    worker_key,
    workers_key,
)

log = logging.getLogger(__name__)

# Pause before a dropped pub/sub subscription is made again.
RESUBSCRIBE_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 30.0
# Entries read per XRANGE / LRANGE page when listing what a queue holds.
SCAN_PAGE = 1000


class RedisStreamQueue(TaskQueue):
    """Task queues on Redis Streams."""

    def __init__(
        self, redis: RedisClient, *, prefix: str, redeliver_after: float, fifo: bool = False
    ) -> None:
        super().__init__(redeliver_after=redeliver_after, fifo=fifo)
        self.redis = redis
        self.prefix = prefix
        self._groups: set[str] = set()
        self._last_reclaim = 0.0
        # Where each stream's XAUTOCLAIM scan goes on from: one call looks at a bounded stretch
        # of the pending list, so starting at 0-0 each time could miss entries further back.
        self._reclaim_from: dict[str, str] = {}
        # Which queue a read of several starts at, turning each call so none waits behind another.
        self._turn = 0
        # Sent by their SHA (EVALSHA), loaded when Redis lacks them: not the whole text each call.
        self._take_script = redis.register_script(TAKE_SCRIPT)
        self._publish_script = redis.register_script(PUBLISH_SCRIPT)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str, redeliver_after: float, fifo: bool = False
    ) -> RedisStreamQueue:
        # The socket timeout outlasts any blocking read the workers make, or those would time out.
        redis = connect(url, socket_timeout=SOCKET_TIMEOUT_SECONDS)
        return cls(redis, prefix=prefix, redeliver_after=redeliver_after, fifo=fifo)

    async def warm(self) -> None:
        await warm(self.redis, (self._take_script, self._publish_script))

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

    async def publish_many(
        self, queue: str, tasks: Sequence[tuple[str, str | None]], placement: Placement
    ) -> None:
        placement = self.placed(placement)
        lane, tenant = placement.lane.value, placement.tenant
        keys = (
            lanes_key(self.prefix, queue),
            ring_key(self.prefix, queue, lane),
            waiting_key(self.prefix, queue, lane, tenant),
            bell_key(self.prefix, queue),
        )
        entries = [f"{task_id}|{trace or ''}|{placement.weight}" for task_id, trace in tasks]
        for start in range(0, len(entries), PUBLISH_CHUNK):
            chunk = entries[start : start + PUBLISH_CHUNK]
            args = [lane, tenant, *chunk]
            await redis_call(lambda args=args: self._publish_script(keys=keys, args=args))  # type: ignore[misc]

    async def receive(
        self,
        queues: Sequence[str],
        consumer: str,
        *,
        count: int,
        wait_seconds: float,
        lanes: Sequence[Lane] | None = None,
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
            # The order turns at each call, so a queue whose lane ties another's is not always
            # second to it.
            self._turn = (self._turn + 1) % len(queues)
            ordered = list(queues)[self._turn :] + list(queues)[: self._turn]
            slots = self._by_slot(ordered)
            allowed = "".join("1" if lanes is None or lane in lanes else "0" for lane in LANES)
            deliveries, last = await self._take(slots, consumer, count, allowed)
            if not deliveries:
                woken = await self._wait_for_bells(slots, last, max(1, int(wait_seconds * 1000)))
                if woken:
                    # The slots that woke first: they hold what the wait was for.
                    rest = [queues for queues in slots if queues not in woken]
                    deliveries, _ = await self._take(woken + rest, consumer, count, allowed)
            return deliveries
        except redis_errors.ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no such key" not in str(exc):
                raise
            # Redis restarted empty (or the stream was deleted): make the groups again next call.
            self._groups.clear()
            return []

    def _by_slot(self, queues: list[str]) -> list[list[str]]:
        """`queues` split into the sets one script may touch together, in their order: all of
        them on one server, one set per hash slot on a cluster."""
        if not isinstance(self.redis, RedisCluster):
            return [queues]
        slots: dict[int, list[str]] = {}
        for queue in queues:
            slots.setdefault(self.redis.keyslot(self._key(queue)), []).append(queue)
        return list(slots.values())

    async def _take(
        self, slots: list[list[str]], consumer: str, count: int, allowed: str
    ) -> tuple[list[Delivery], dict[str, str]]:
        """Up to `count` deliveries in all, slot after slot, not waiting (see `TAKE_SCRIPT`);
        when none came, each queue's bell's last id, to wait from."""
        deliveries: list[Delivery] = []
        last: dict[str, str] = {}
        for queues in slots:
            wanted = count - len(deliveries)
            keys = [
                key
                for queue in queues
                for key in (
                    self._key(queue), lanes_key(self.prefix, queue), bell_key(self.prefix, queue)
                )
            ]  # fmt: skip
            bases = [queue_key_base(self.prefix, queue) for queue in queues]
            args = [CONSUMER_GROUP, consumer, wanted, allowed, *bases]
            answer: Any = await redis_call(
                lambda keys=keys, args=args: self._take_script(keys=keys, args=args)  # type: ignore[misc]
            )
            read, bells = answer
            deliveries += [
                self._delivery(queues[int(number) - 1], message_id, _fields(flat))
                for number, entries in read
                for message_id, flat in entries
            ]
            last.update(zip(queues, bells, strict=False))
            if len(deliveries) >= count:
                break
        return deliveries, last

    async def _wait_for_bells(
        self, slots: list[list[str]], last: dict[str, str], block_ms: int
    ) -> list[list[str]]:
        """Wait up to `block_ms` until a queue's bell rings past `last` (a publish since the
        take found nothing); the slots where one did (none on timeout). Plain XREADs take
        nothing, so the ones still waiting when another returns can be cancelled."""
        if any(queue not in last for queues in slots for queue in queues):
            return []  # a take that did not say where to wait from: take again

        async def wait(queues: list[str]) -> bool:
            bells: dict[Any, Any] = {bell_key(self.prefix, q): last[q] for q in queues}
            found: Any = await redis_call(lambda: self.redis.xread(bells, count=1, block=block_ms))
            return bool(found)

        if len(slots) == 1:
            return slots if await wait(slots[0]) else []
        waits = [asyncio.ensure_future(wait(queues)) for queues in slots]
        try:
            pending: set[asyncio.Future[bool]] = set(waits)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                woken = [
                    queues
                    for queues, w in zip(slots, waits, strict=True)
                    if w in done and w.result()
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
        await self.ack_many([delivery])

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        by_stream: dict[str, list[str]] = {}
        for delivery in deliveries:
            by_stream.setdefault(self._key(delivery.queue), []).append(delivery.message_id)

        async def ack_and_delete() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, ids in by_stream.items():
                    pipe.xack(key, CONSUMER_GROUP, *ids)
                    pipe.xdel(key, *ids)  # keeps the stream as short as its backlog
                await pipe.execute()

        if by_stream:
            await redis_call(ack_and_delete)

    async def depth(self, queue: str, lanes: Sequence[Lane] | None = None) -> int:
        key, state = self._key(queue), lanes_key(self.prefix, queue)
        fields = [f"n:{lane}" for lane in (LANES if lanes is None else lanes)]

        async def read() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xlen(key)
                pipe.hmget(state, fields)
                return list(await pipe.execute())

        handed_out, waiting = await redis_call(read)
        return int(handed_out) + sum(max(0, int(n or 0)) for n in waiting)

    async def queued_task_ids(self, queue: str) -> set[str]:
        # The lanes first, then the stream: an entry moved from one to the other meanwhile is
        # still seen (in the stream).
        ids: set[str] = set()
        for lane in LANES:
            ring = ring_key(self.prefix, queue, lane)
            tenants: Any = await redis_call(lambda ring=ring: self.redis.zrange(ring, 0, -1))  # type: ignore[misc]
            for tenant in tenants:
                ids |= await self._list_ids(waiting_key(self.prefix, queue, lane, tenant))
        key, start = self._key(queue), "-"
        while True:
            page: Any = await redis_call(
                lambda start=start: self.redis.xrange(key, start, "+", count=SCAN_PAGE)  # type: ignore[misc]
            )
            ids.update(fields[TASK_FIELD] for _, fields in page if TASK_FIELD in fields)
            if len(page) < SCAN_PAGE:
                return ids
            start = "(" + page[-1][0]

    async def _list_ids(self, key: str) -> set[str]:
        """The task ids of one tenant's list in a lane, a page at a time."""
        ids: set[str] = set()
        start = 0
        while True:
            page: Any = await redis_call(
                lambda start=start: self.redis.lrange(key, start, start + SCAN_PAGE - 1)  # type: ignore[misc]
            )
            ids.update(entry.split("|", 1)[0] for entry in page)
            if len(page) < SCAN_PAGE:
                return ids
            start += SCAN_PAGE

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
