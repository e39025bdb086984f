"""Group commit: items handed in meanwhile go out together, each caller hearing its own outcome.

An item that finds no group on its way goes at the next turn of the event loop with those handed
in the same tick; those handed in while groups are on their way go with the next. The gateway's
submits (`store/submit_batch.py`) and publishes (`lifecycle/publish_group.py`) share this.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K")

# `send(items)` answers, for each item in order, what stopped it, or None.
Send = Callable[[list[T]], Awaitable[list[BaseException | None]]]


class Groups(Generic[T]):
    """The groups of one sender on one event loop: at most `most` items a group, `in_flight`
    groups on their way at once."""

    def __init__(self, send: Send[T], *, most: int, in_flight: int = 2) -> None:
        self.send, self.most, self.in_flight = send, most, in_flight
        self.loop = asyncio.get_running_loop()
        self.waiting: list[tuple[T, asyncio.Future[None]]] = []
        self.senders: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def hand_in(self, item: T) -> None:
        """Return once `item` went out with its group; raise what stopped it."""
        done = self.loop.create_future()
        self.waiting.append((item, done))
        if len(self.senders) < self.in_flight:
            sender = self.loop.create_task(self._sender())
            self.senders.add(sender)
            sender.add_done_callback(self.senders.discard)
        await done

    async def _sender(self) -> None:
        await asyncio.sleep(0)  # what is handed in this tick joins the group
        while self.waiting:
            group, self.waiting = self.waiting[: self.most], self.waiting[self.most :]
            errors: list[BaseException | None]
            try:
                errors = await self.send([item for item, _ in group])
            except BaseException as exc:  # cancelled: no caller is left waiting for ever
                group, self.waiting = group + self.waiting, []
                errors = [exc] * len(group)
                raise
            finally:
                for (_, done), error in zip(group, errors, strict=True):
                    _settle(done, error)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # its caller went away; the item goes out (or fails) all the same
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def groups_of(
    registry: weakref.WeakKeyDictionary[K, Groups[T]], key: K, make: Callable[[], Groups[T]]
) -> Groups[T]:
    """The groups `registry` holds for `key` on the running loop, made when there are none yet
    (or only a stopped loop's)."""
    groups = registry.get(key)
    if groups is None or groups.loop is not asyncio.get_running_loop():
        groups = registry[key] = make()
    return groups
