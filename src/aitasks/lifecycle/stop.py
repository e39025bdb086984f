"""Stopping a task a client ended: its stream ends, and the worker running it lets go."""

from __future__ import annotations

from aitasks.events.base import DONE, STATUS
from aitasks.services import Services


async def stop_task(services: Services, task_id: str, status: str) -> None:
    """A task ended by a client (cancelled, or deleted with its conversation): end its stream for
    readers and tell the worker running it to stop. Best effort: a missed announcement is caught
    by the worker's next lease renewal."""
    await services.events.append(task_id, STATUS, {"status": status})
    await services.events.append(task_id, DONE, {})
    await services.queue.announce_cancel(task_id)
