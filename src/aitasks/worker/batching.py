"""Group commit for the worker's round trips: calls made while one flush is in flight (or in the
same turn of the event loop) go out together in the next one.

Claims, finished tasks, event appends and acknowledgements each pass through one `Coalescer`: at
low load a call waits for nothing (the flush starts on the next turn of the loop), under load the
calls that queued up behind a flush share the next statement or pipeline, so a round trip and the
driver's cost per statement are paid once per flush rather than once per task. Each caller still
waits for its own result: nothing is reported done before its flush is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Most items one flush takes; the rest wait for the next.
MOST_PER_FLUSH = 100


class Coalescer(Generic[T, R]):
    """`flush(items)` returns one result per item, in order; an exception it raises is every
    item's. A result that is itself an exception is raised to that item's caller alone."""

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        most: int = MOST_PER_FLUSH,
    ) -> None:
        self._flush = flush
        self._most = most
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._run())
        # Shielded: a caller that stops waiting does not stop the flush the others share.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        # One turn of the loop first, so what the same moment submits rides along.
        await asyncio.sleep(0)
        while self._waiting:
            batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
            try:
                results = await self._flush([item for item, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled (the worker is stopping): the callers were told
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
