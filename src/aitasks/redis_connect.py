"""One way to open a Redis client from a URL, and the one boundary its failures cross, shared by
the queue, the event log and the limits.

`redis://host:port/0` (or `rediss://` for TLS) names one server; `redis+cluster://host:port` (or
`rediss+cluster://`) names a Redis Cluster through any one of its nodes, from which the client
learns the rest. A scheme of its own, rather than a query option, so a cluster URL given to a
plain Redis client fails at once instead of talking to one node of the cluster.

A fresh client connects at its first command; `warm()` makes it connect before the service
serves, and loads its scripts.

Every Redis call goes through `redis_boundary()` (or `redis_call`), which turns "Redis cannot be
reached" into `RedisUnavailable`; callers catch that type and never look at the driver's errors.
A command Redis refuses (`ResponseError`: NOGROUP, a bad id) passes through as it is, for the
caller that knows what it means.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.maint_notifications import MaintNotificationsConfig

from aitasks.errors import RedisUnavailable

T = TypeVar("T")

# What the queue and the event log hold; every operation they make works on both.
RedisClient: TypeAlias = Redis | RedisCluster

# Errors that mean the server (or enough of the cluster) cannot be reached, not that a command is
# wrong: a cluster reports a node down or a slot uncovered as its own errors. Private: only the
# boundary below tests for them.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.RedisClusterException,
    OSError,
)

# Every waiter (an SSE stream, a `Prefer: wait` request) holds a connection for its blocking read,
# so the pool must not refuse the hundred-and-first (redis-py 8 bounds a pool at 100 by default,
# and answers the next with "Too many connections"); Redis itself bounds clients (maxclients).
MAX_CONNECTIONS = 2**31

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
        "max_connections": MAX_CONNECTIONS,
        "socket_connect_timeout": 5,
        "socket_timeout": socket_timeout,
        "health_check_interval": health_check_interval,
        # Off, so that the pool replaces a connection Redis closed (a restart) before handing it
        # out: redis-py 8 skips that check while these are "auto", its default, and the first
        # command on each such connection failed ("Connection closed by server"). They are a
        # managed Redis's maintenance pushes, which need RESP3; this client speaks RESP2.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    plain = cluster_url(url)
    if plain is not None:
        return RedisCluster.from_url(plain, **options)
    return Redis.from_url(url, **options)


async def warm(client: RedisClient, scripts: Iterable[AsyncScript] = ()) -> None:
    """Connect `client` now (on a cluster: learn the slot map and reach every node) and load
    `scripts`, so the commands of the first requests, sent all at once, find it ready: redis-py's
    cluster client, fresh, fails some of a burst of first commands ('NoneType' object has no
    attribute 'writelines'), and a script sent by its SHA in a pipeline before Redis has it comes
    back as NoScriptError. Raises `RedisUnavailable` when Redis cannot be reached."""
    with redis_boundary():
        if isinstance(client, RedisCluster):
            await client.initialize()
            await client.ping(target_nodes=RedisCluster.ALL_NODES)
        else:
            await client.ping()
        for script in scripts:
            # On a cluster, SCRIPT LOAD goes to every primary.
            await client.script_load(script.script)


@contextmanager
def redis_boundary() -> Iterator[None]:
    """The one place where an unreachable Redis becomes `RedisUnavailable` (a 503 at the gateway,
    a pause in the worker); anything else passes through as it is. Wraps async code too:
    `with redis_boundary(): await ...`."""
    try:
        yield
    except _UNREACHABLE as exc:
        raise RedisUnavailable(f"Redis is unreachable: {exc}") from exc


async def redis_call(operation: Callable[[], Awaitable[T]]) -> T:
    """Await `operation()` (one Redis command, or a function that makes several) inside
    `redis_boundary()`: the short form for a call site that is one expression."""
    with redis_boundary():
        return await operation()
