"""What a long-lived service made while warming up, frozen out of the garbage collector's sight.

`cli.run_service` freezes what start-up made. What serving the first requests or deliveries makes
and keeps (connections, prepared statements, compiled queries, metric series: ~27,000 objects in a
worker after a few thousand tasks) was walked by every full collection after it: every few seconds
under load, a stop of the event loop of 25-40 ms of CPU on a 2-core machine, a latency spike for
every task in flight. So after the first units of work, and again after many more (what only a
longer run makes), a full collection, then `gc.freeze()`: collected first, so no garbage is kept.
"""

from __future__ import annotations

import gc

from starlette.types import ASGIApp, Receive, Scope, Send

# After how many units of work (a worker's deliveries, a gateway's requests) to freeze.
FREEZE_AFTER = (500, 10_000)


class WarmFreeze:
    """Counts units of work; after the `after`-th ones, a full collection and a freeze."""

    def __init__(self, after: tuple[int, ...] = FREEZE_AFTER) -> None:
        self.after = after
        self.done = 0

    def count(self) -> None:
        self.done += 1
        if self.done in self.after:
            gc.collect()
            gc.freeze()


class FreezingApp:
    """An ASGI app whose HTTP requests are the units of work of a `WarmFreeze`."""

    def __init__(self, app: ASGIApp, freezes: WarmFreeze | None = None) -> None:
        self.app = app
        self.freezes = freezes or WarmFreeze()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.freezes.count()
        await self.app(scope, receive, send)
