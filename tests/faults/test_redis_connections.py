"""A Redis client the service made keeps working when Redis restarts under it: the first command on
each connection it had pooled goes through (the pool replaces what Redis closed), not "Connection
closed by server". A gateway warms its clients at start-up, so every one of them holds such a
connection from its first second."""

from __future__ import annotations

import asyncio

from aitasks.redis_connect import connect, warm
from tests.support.faults import restart_empty
from tests.support.processes import Background

POOLED = 5


async def test_pooled_connections_are_replaced_after_a_redis_restart(
    redis_server: Background,
) -> None:
    client = connect(f"redis://127.0.0.1:{redis_server.port}/0", socket_timeout=5)
    try:
        await warm(client)
        # Several connections in the pool, each used once.
        await asyncio.gather(*(client.xread({"k": "0-0"}, block=50) for _ in range(POOLED)))
        restart_empty(redis_server)
        await asyncio.sleep(0.2)  # the loop runs, as a service's always does, and sees them closed
        answers = await asyncio.gather(
            *(client.xread({f"k{n}": "0-0"}) for n in range(POOLED)), client.ping()
        )
        assert answers == [[]] * POOLED + [True]
    finally:
        await client.aclose()
