"""Publishing committed tasks together: every task submitted meanwhile goes on its queue in one
publish per queue and placement (one round trip on Redis), instead of one publish per task.

As the store's group commit (`store/submit_batch.py`): a task that finds no group on its way goes
at the next turn of the event loop with those committed in the same tick; those committed while a
group is on its way go with the next. Each submit hears its own task's outcome: a queue that
cannot be reached is its `RedisUnavailable`, as it was alone.

(The first event of each task's log is still appended by its own request: pipelining those too
needs a log that appends for many tasks in one round trip on every backend, Redis Cluster
included.)
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

from aitasks.priority import Placement
from aitasks.queue.base import TaskQueue

# Tasks one group publishes at most; more wait for the next.
GROUP_TASKS = 200
# Groups on their way at once.
GROUPS_IN_FLIGHT = 2


@dataclass(frozen=True, slots=True)
class Announcement:
    """A committed task to publish: its id, its queue, its trace and its place in the queue."""

    task_id: str
    queue: str
    trace: str | None
    placement: Placement


Waiting = tuple[Announcement, asyncio.Future[None]]


class Announcer:
    """The groups of one queue on one event loop."""

    def __init__(self, queue: TaskQueue) -> None:
        self.queue = queue
        self.loop = asyncio.get_running_loop()
        self.waiting: list[Waiting] = []
        self.senders: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def announce(self, task: Announcement) -> None:
        done = self.loop.create_future()
        self.waiting.append((task, done))
        if len(self.senders) < GROUPS_IN_FLIGHT:
            sender = self.loop.create_task(self._sender())
            self.senders.add(sender)
            sender.add_done_callback(self.senders.discard)
        await done

    async def _sender(self) -> None:
        await asyncio.sleep(0)  # the tasks committed in this tick join the group
        while self.waiting:
            group, self.waiting = self.waiting[:GROUP_TASKS], self.waiting[GROUP_TASKS:]
            errors: list[BaseException | None]
            try:
                errors = await self._send([task for task, _ in group])
            except BaseException as exc:  # cancelled: no waiter is left waiting for ever
                group, self.waiting = group + self.waiting, []
                errors = [exc] * len(group)
                raise
            finally:
                for (_, done), error in zip(group, errors, strict=True):
                    _settle(done, error)

    async def _send(self, tasks: list[Announcement]) -> list[BaseException | None]:
        """Publish `tasks`, one call per queue and placement; what stopped each one, or None."""
        places: dict[tuple[str, Placement], list[tuple[str, str | None]]] = {}
        for task in tasks:
            place = (task.queue, self.queue.placed(task.placement))
            places.setdefault(place, []).append((task.task_id, task.trace))
        answers: list[Any] = await asyncio.gather(
            *(self.queue.publish_many(q, entries, p) for (q, p), entries in places.items()),
            return_exceptions=True,
        )
        failed = dict(zip(places, answers, strict=True))
        return [failed[(t.queue, self.queue.placed(t.placement))] for t in tasks]


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # its request went away; the task is announced all the same
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


_announcers: weakref.WeakKeyDictionary[TaskQueue, Announcer] = weakref.WeakKeyDictionary()


async def announce(queue: TaskQueue, task: Announcement) -> None:
    """Publish the committed `task` with the others committed meanwhile; raise what stopped its
    publish."""
    announcer = _announcers.get(queue)
    if announcer is None or announcer.loop is not asyncio.get_running_loop():
        announcer = _announcers[queue] = Announcer(queue)
    await announcer.announce(task)
