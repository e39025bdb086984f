"""What the Redis backends promise beyond the contracts, on a single Redis and on a cluster: a
queue whose stream vanished (Redis restarted empty) recovers, a rate limit is shared by every
worker's connection, and an event log expires from its first write and sooner once done."""

from __future__ import annotations

import pytest

from aitasks.events.base import DELTA, DONE, FINISHED_LOG_TTL, STATUS
from aitasks.events.redis import RedisEventLog
from aitasks.queue.base import RateSlot
from aitasks.queue.redis import RedisStreamQueue
from aitasks.redis_keys import events_key
from tests.support.backends import REDIS, RedisAt, redis_at


@pytest.fixture(params=REDIS)
def redis(request: pytest.FixtureRequest) -> RedisAt:
    at = redis_at(request, request.param)
    assert at is not None
    return at


async def test_a_queue_recovers_when_its_stream_vanishes(redis: RedisAt) -> None:
    queue = RedisStreamQueue.from_url(redis.url, prefix=redis.prefix, redeliver_after=30)
    try:
        await queue.publish("q", "before")
        await queue.receive(["q"], "c", count=1, wait_seconds=1)
        # What a Redis restarted empty looks like to a running worker: no stream, no group.
        await queue.redis.delete(queue._key("q"))
        assert await queue.receive(["q"], "c", count=1, wait_seconds=0.05) == []
        await queue.publish("q", "after")
        assert [d.task_id for d in await queue.receive(["q"], "c", count=1, wait_seconds=1)] == [
            "after"
        ]
    finally:
        await queue.close()


async def test_a_rate_limit_is_shared_by_every_worker(redis: RedisAt) -> None:
    workers = [
        RedisStreamQueue.from_url(redis.url, prefix=redis.prefix, redeliver_after=30)
        for _ in range(2)
    ]
    try:
        results = [
            await workers[n % 2].rate_slot("rpm:shared", 4, 60.0, held_for=10) for n in range(6)
        ]
    finally:
        for worker in workers:
            await worker.close()
    assert all(isinstance(r, RateSlot) for r in results[:4])
    assert all(isinstance(r, float) and r > 0 for r in results[4:])


async def test_a_log_expires_from_its_first_write_and_sooner_once_done(redis: RedisAt) -> None:
    events = RedisEventLog.from_url(redis.url, prefix=redis.prefix)
    key = events_key(redis.prefix, "t1")
    try:
        await events.append_many("t1", [(STATUS, {"status": "RUNNING"})])
        started = await events.redis.ttl(key)
        assert started > FINISHED_LOG_TTL
        await events.redis.persist(key)  # so a later write that set an expiry would show
        await events.append_many("t1", [(DELTA, {"delta": "hi"})], first=False)
        assert await events.redis.ttl(key) == -1  # a middle write leaves the expiry alone
        await events.append_many("t1", [(STATUS, {"status": "SUCCESS"}), (DONE, {})], first=False)
        assert 0 < await events.redis.ttl(key) <= FINISHED_LOG_TTL
        read = await events.read("t1", after=None, wait_seconds=0)
        assert [e.type for e in read] == [STATUS, DELTA, STATUS, DONE]
    finally:
        await events.close()
