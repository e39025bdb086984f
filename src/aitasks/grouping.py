"""Group commit: items handed in meanwhile go out together, each caller hearing its own outcome.

An item that finds no group on its way goes at the next turn of the event loop with those handed
in the same tick; those handed in while groups are on their way go with the next. No fixed wait:
at low load a group is one item, under load groups grow with the backlog, so a round trip and the
driver's cost per statement are paid once per group rather than once per item. The gateway's
submits (`store/submit_batch.py`) and publishes (`lifecycle/publish_group.py`) and the worker's
claims, finishes, event appends and acknowledgements share this.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")
G = TypeVar("G", bound="ResultGroups[Any, Any]")

# `send(items)` answers, for each item in order, its result or what stopped it.
Send = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class ResultGroups(Generic[T, R]):
    """The groups of one sender on one event loop: at most `most` items a group, `in_flight`
    groups on their way at once; each item's caller gets the result `send` gives it.

    An exception `send` raises is the outcome of every item of its group, and of no other: the
    next group goes all the same. Cancelled (the loop is stopping), it fails every item still
    waiting, so no caller waits for ever. A caller that stops waiting does not take its item out
    of its group, nor stop the group the others share.
    """

    def __init__(self, send: Send[T, R], *, most: int, in_flight: int = 2) -> None:
        self.send, self.most, self.in_flight = send, most, in_flight
        self.loop = asyncio.get_running_loop()
        self.waiting: list[tuple[T, asyncio.Future[R]]] = []
        # Senders at work, counted by the senders themselves: a task's done callbacks run a turn
        # after it ends, and an item handed in meanwhile must not count on a sender that left.
        self.sending = 0
        self.senders: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def hand_in(self, item: T) -> R:
        """Return `item`'s result once its group went out; raise what stopped it."""
        done: asyncio.Future[R] = self.loop.create_future()
        self.waiting.append((item, done))
        if self.sending < self.in_flight:
            self.sending += 1
            sender = self.loop.create_task(self._sender())
            self.senders.add(sender)
            sender.add_done_callback(self.senders.discard)
        return await done

    async def _sender(self) -> None:
        try:
            await asyncio.sleep(0)  # what is handed in this tick joins the group
            await self._send_waiting()
        finally:
            self.sending -= 1  # in the same step as the last look at `waiting`

    async def _send_waiting(self) -> None:
        while self.waiting:
            group, self.waiting = self.waiting[: self.most], self.waiting[self.most :]
            outcomes: Sequence[R | BaseException]
            try:
                outcomes = await self.send([item for item, _ in group])
            except Exception as exc:
                outcomes = [exc] * len(group)
            except BaseException as exc:  # cancelled: no caller is left waiting for ever
                group, self.waiting = group + self.waiting, []
                outcomes = [exc] * len(group)
                raise
            finally:
                for (_, done), outcome in zip(group, outcomes, strict=True):
                    _settle(done, outcome)


class Groups(ResultGroups[T, None]):
    """Groups whose items have no result: each caller hears only that its item went out."""


def _settle(done: asyncio.Future[R], outcome: R | BaseException) -> None:
    if done.done():  # its caller went away; the item goes out (or fails) all the same
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


def groups_of(registry: weakref.WeakKeyDictionary[K, G], key: K, make: Callable[[], G]) -> G:
    """The groups `registry` holds for `key` on the running loop, made when there are none yet
    (or only a stopped loop's)."""
    groups = registry.get(key)
    if groups is None or groups.loop is not asyncio.get_running_loop():
        groups = registry[key] = make()
    return groups
