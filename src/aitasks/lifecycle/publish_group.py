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
from functools import partial
from typing import Any

from aitasks.grouping import Groups, groups_of
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


async def _send(queue: TaskQueue, tasks: list[Announcement]) -> list[BaseException | None]:
    """Publish `tasks`, one call per queue and placement; what stopped each one, or None."""
    places: dict[tuple[str, Placement], list[tuple[str, str | None]]] = {}
    for task in tasks:
        place = (task.queue, queue.placed(task.placement))
        places.setdefault(place, []).append((task.task_id, task.trace))
    answers: list[Any] = await asyncio.gather(
        *(queue.publish_many(q, entries, p) for (q, p), entries in places.items()),
        return_exceptions=True,
    )
    failed = dict(zip(places, answers, strict=True))
    return [failed[(t.queue, queue.placed(t.placement))] for t in tasks]


_announcers: weakref.WeakKeyDictionary[TaskQueue, Groups[Announcement]] = (
    weakref.WeakKeyDictionary()
)


async def announce(queue: TaskQueue, task: Announcement) -> None:
    """Publish the committed `task` with the others committed meanwhile; raise what stopped its
    publish."""
    groups = groups_of(
        _announcers,
        queue,
        lambda: Groups(partial(_send, queue), most=GROUP_TASKS, in_flight=GROUPS_IN_FLIGHT),
    )
    await groups.hand_in(task)
