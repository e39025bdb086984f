"""One way to open a Redis client from a URL, shared by the queue, the event log and the limits.

`redis://host:port/0` (or `rediss://` for TLS) names one server; `redis+cluster://host:port` (or
`rediss+cluster://`) names a Redis Cluster through any one of its nodes, from which the client
learns the rest. A scheme of its own, rather than a query option, so a cluster URL given to a
plain Redis client fails at once instead of talking to one node of the cluster.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster

# What the queue and the event log hold; every operation they make works on both.
RedisClient: TypeAlias = Redis | RedisCluster

# Errors that mean the server (or enough of the cluster) cannot be reached, not that a command is
# wrong: a cluster reports a node down or a slot uncovered as its own errors.
UNREACHABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.RedisClusterException,
    OSError,
)

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """The plain URL of the cluster `url` names, or None when it names a single server."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    return f"{plain}://{rest}" if plain else None


def connect(url: str, *, socket_timeout: float, health_check_interval: int = 30) -> RedisClient:
    """A client for `url`, answering strings. `socket_timeout` must outlast the caller's longest
    blocking read, or that read would time out."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 5,
        "socket_timeout": socket_timeout,
        "health_check_interval": health_check_interval,
    }
    plain = cluster_url(url)
    if plain is not None:
        return RedisCluster.from_url(plain, **options)
    return Redis.from_url(url, **options)
