"""Where a task waits and until when: its lane, its tenant's share of the lane, its deadline and
the bound on its run; and handing a stored task to its queue in the same place every time (at
submit, as a conversation's next turn, by the reconciler, on a retry or a hand-back)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aitasks.auth.caller import Caller
from aitasks.errors import InvalidRequest
from aitasks.priority import Lane, Placement, QueuedTask, capped
from aitasks.routing import ModelSpec
from aitasks.services import Services
from aitasks.store.models import Task

# The longest deadline and run bound a request may ask for: a week, and a day.
MAX_EXPIRES_AFTER = 7 * 86_400.0
MAX_TIMEOUT = 86_400.0


@dataclass(frozen=True, slots=True)
class Scheduling:
    """What a new task is given besides its request: its place, its deadline, its run bound."""

    placement: Placement
    expires_at: datetime | None = None
    timeout_seconds: float | None = None

    def columns(self) -> dict[str, Any]:
        """Its task's columns (`store.tasks.submit_task`'s `scheduling`)."""
        return {
            "priority": self.placement.lane.value,
            "weight": self.placement.weight,
            "expires_at": self.expires_at,
            "timeout_seconds": self.timeout_seconds,
        }


def _seconds(value: float | None, name: str, most: float) -> float | None:
    if value is None:
        return None
    if not 1 <= value <= most:
        raise InvalidRequest(f"{name} must be between 1 and {most:.0f} seconds", param=name)
    return float(value)


def schedule(
    caller: Caller,
    spec: ModelSpec,
    now: datetime,
    *,
    priority: Lane | None = None,
    interactive: bool = False,
    expires_after: float | None = None,
    timeout: float | None = None,
) -> Scheduling:
    """A new task's lane (the one asked for; else `interactive` when someone waits on it, else
    `default`; never above what the key may use), its tenant's weight, its deadline (asked for,
    else the key's, else the model's) and the bound on its run."""
    key = caller.key
    lane = priority or (Lane.INTERACTIVE if interactive else Lane.DEFAULT)
    if key is not None and key.max_priority:
        lane = capped(lane, Lane(key.max_priority))
    weight = key.weight if key is not None else 1
    wait = _seconds(expires_after, "expires_after", MAX_EXPIRES_AFTER)
    if wait is None:
        wait = key.expires_after if key is not None and key.expires_after else spec.expires_after
    return Scheduling(
        Placement(lane, caller.tenant, weight),
        now + timedelta(seconds=wait) if wait else None,
        _seconds(timeout, "timeout", MAX_TIMEOUT),
    )


def placement_of(task: Task) -> Placement:
    """A stored task's place in its queue."""
    return Placement.of(task.priority, task.tenant, task.weight)


def queued(task: Task) -> QueuedTask:
    return QueuedTask(task.id, task.queue, placement_of(task))


async def publish(services: Services, task: QueuedTask, *, trace: str | None = None) -> None:
    """Hand a stored task to its queue, in its lane and its tenant's share."""
    await services.queue.publish(task.queue, task.id, trace=trace, placement=task.placement)
