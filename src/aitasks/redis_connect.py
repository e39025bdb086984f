"""One way to open a Redis client from a URL, shared by the queue, the event log and the limits."""

from __future__ import annotations

from redis.asyncio import Redis


def connect(url: str, *, socket_timeout: float, health_check_interval: int = 30) -> Redis:
    """A client for `url`, answering strings. `socket_timeout` must outlast the caller's longest
    blocking read, or that read would time out."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=socket_timeout,
        health_check_interval=health_check_interval,
    )
