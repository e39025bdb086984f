"""Publishing committed tasks together: every task submitted meanwhile goes on its queue in one
publish per queue and placement (one round trip on Redis), and its event log gets its first event
(`status: PENDING`) in one pipeline for the group (`EventLog.append_batch`), instead of a publish
and an append per task.

As the store's group commit (`store/submit_batch.py`): a task that finds no group on its way goes
at the next turn of the event loop with those committed in the same tick; those committed while a
group is on its way go with the next. Each submit hears its own task's outcome: a queue or a log
that cannot be reached is its `RedisUnavailable`, as it was alone.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Any

from aitasks.events.base import STATUS, Append, EventLog
from aitasks.grouping import Groups, groups_of
from aitasks.priority import Placement
from aitasks.queue.base import TaskQueue
from aitasks.store.models import TaskStatus

# Tasks one group publishes at most; more wait for the next.
GROUP_TASKS = 200
# Groups on their way at once.
GROUPS_IN_FLIGHT = 2


@dataclass(frozen=True, slots=True)
class Announcement:
    """A committed task to publish: its id, its queue, its trace and its place in the queue; and
    the event log to start with its first event (None: another writes it)."""

    task_id: str
    queue: str
    trace: str | None
    placement: Placement
    events: EventLog | None = None


# A new task's first event, as a submit writes it.
PENDING_EVENT = (STATUS, {"status": TaskStatus.PENDING})


async def _publish(queue: TaskQueue, tasks: list[Announcement]) -> list[BaseException | None]:
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


async def _start_logs(tasks: list[Announcement]) -> list[BaseException | None]:
    """Append each task's first event to its log, one batch per log; what stopped each one (a
    failed batch stops each of its tasks), or None."""
    logs: dict[int, tuple[EventLog, list[Announcement]]] = {}
    for task in tasks:
        if task.events is not None:
            logs.setdefault(id(task.events), (task.events, []))[1].append(task)
    outcome: dict[str, BaseException | None] = {}
    for log, started in logs.values():
        try:
            answers: list[Any] = await log.append_batch(
                [Append(t.task_id, [PENDING_EVENT]) for t in started]
            )
        except Exception as exc:
            answers = [exc] * len(started)
        for task, answer in zip(started, answers, strict=True):
            outcome[task.task_id] = answer if isinstance(answer, BaseException) else None
    return [outcome.get(t.task_id) for t in tasks]


async def _send(queue: TaskQueue, tasks: list[Announcement]) -> list[BaseException | None]:
    """Publish `tasks` and start their logs, side by side; for each, what stopped it (its publish
    first), or None."""
    published, started = await asyncio.gather(_publish(queue, tasks), _start_logs(tasks))
    return [p or s for p, s in zip(published, started, strict=True)]


_announcers: weakref.WeakKeyDictionary[TaskQueue, Groups[Announcement]] = (
    weakref.WeakKeyDictionary()
)


async def announce(queue: TaskQueue, task: Announcement) -> None:
    """Publish the committed `task` (and start its log) with the others committed meanwhile;
    raise what stopped either."""
    groups = groups_of(
        _announcers,
        queue,
        lambda: Groups(partial(_send, queue), most=GROUP_TASKS, in_flight=GROUPS_IN_FLIGHT),
    )
    await groups.hand_in(task)
