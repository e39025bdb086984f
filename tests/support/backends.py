"""Each seam's backends by name, as the contract suites run them: the task queue, the event log and
the limit counters in-process, on Redis and on Redis Cluster.

A contract fixture is parametrised by one of these tuples, so a contract test runs on every
backend named here without being listed anywhere; a backend added here joins every contract test.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from aitasks.events.base import EventLog
from aitasks.events.memory import InProcessEventLog
from aitasks.events.redis import RedisEventLog
from aitasks.limits.base import Counters
from aitasks.limits.memory import InProcessCounters
from aitasks.limits.redis import RedisCounters
from aitasks.queue.base import TaskQueue
from aitasks.queue.memory import InProcessQueue
from aitasks.queue.redis import RedisStreamQueue
from tests.support.services import REDIS_URL

IN_PROCESS = "in-process"
REDIS = ("redis", "redis-cluster")
DATABASES = ("sqlite", "postgresql")
QUEUES = (IN_PROCESS, *REDIS)
EVENT_LOGS = (IN_PROCESS, *REDIS)
COUNTERS = (IN_PROCESS, *REDIS)

# How long an unacknowledged delivery waits before another consumer may take it: short, so the
# redelivery tests are quick.
REDELIVER_AFTER = 0.3


@dataclass(frozen=True)
class RedisAt:
    """A Redis (single or cluster) and a key prefix of the test's own on it."""

    url: str
    prefix: str


def redis_at(request: pytest.FixtureRequest, backend: str) -> RedisAt | None:
    """Where a backend of this name keeps its data: None in-process; on Redis or the cluster, a
    fresh prefix through the `redis_prefix` or `cluster_prefix` fixture."""
    if backend == IN_PROCESS:
        return None
    if backend == "redis":
        return RedisAt(REDIS_URL, request.getfixturevalue("redis_prefix"))
    if backend == "redis-cluster":
        return RedisAt(
            request.getfixturevalue("redis_cluster").url, request.getfixturevalue("cluster_prefix")
        )
    raise ValueError(f"no backend named {backend!r}")


def make_queue(redis: RedisAt | None) -> TaskQueue:
    if redis is None:
        return InProcessQueue(redeliver_after=REDELIVER_AFTER)
    return RedisStreamQueue.from_url(
        redis.url, prefix=redis.prefix, redeliver_after=REDELIVER_AFTER
    )


def make_event_log(redis: RedisAt | None) -> EventLog:
    if redis is None:
        return InProcessEventLog()
    return RedisEventLog.from_url(redis.url, prefix=redis.prefix)


def make_counters(redis: RedisAt | None) -> Counters:
    if redis is None:
        return InProcessCounters()
    return RedisCounters.from_url(redis.url, prefix=redis.prefix)
