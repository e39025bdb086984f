"""The task event log on Redis: what a worker's writes leave behind."""

from __future__ import annotations

from aitasks.events.base import DELTA, DONE, FINISHED_LOG_TTL, STATUS
from aitasks.events.redis import RedisEventLog
from aitasks.queue.keys import events_key
from tests.conftest import REDIS_URL


async def test_a_log_expires_from_its_first_write_and_sooner_once_done(redis_prefix: str) -> None:
    events = RedisEventLog.from_url(REDIS_URL, prefix=redis_prefix)
    key = events_key(redis_prefix, "t1")
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
