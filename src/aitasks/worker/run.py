"""One claim of one task by this worker: what its run holds from the claim to the acknowledgement.

A `TaskRun` is made when a claim succeeds and dropped when its delivery is acknowledged (or the run
breaks off). It carries the task, the delivery to acknowledge, the writer of the task's events
(fenced by this claim's run and attempt, as its result write is), the context header the claim
read, the provider call in flight and the lease keeper beside it; and, once the outcome is written,
what the finishing transaction found (the conversation's next turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aitasks.events.base import Fence
from aitasks.queue import Delivery
from aitasks.services import Services
from aitasks.store import claims
from aitasks.store.conversations import ContextHeader
from aitasks.store.models import Task
from aitasks.worker.event_writer import EventAppender, TaskEventWriter

if TYPE_CHECKING:
    from aitasks.worker.calls import Reply

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class TaskRun:
    task: Task
    delivery: Delivery
    events: TaskEventWriter
    # What the claim read for the task's first context; later attempts read it anew.
    header: ContextHeader | None = None
    # The provider call (fallbacks and retries included), while it runs; cancelling it stops it.
    call: asyncio.Task[Reply] | None = None
    # Renews the lease from the call's start until the outcome is written.
    lease: asyncio.Task[None] | None = None
    # Set once the outcome is written: what the finishing transaction found.
    finished: claims.Finished | None = None
    # Set when the task went back to PENDING at shutdown: its next turn must keep waiting.
    handed_back: bool = False
    # Set when its run bound (`timeout_seconds`, across attempts) ran out and stopped the call.
    timed_out: bool = False

    @classmethod
    def of(
        cls,
        claim: claims.Claim,
        delivery: Delivery,
        services: Services,
        appender: EventAppender | None = None,
    ) -> TaskRun:
        """The run of a successful claim (its events sent through `appender`, the worker's, when
        given)."""
        task = claim.task
        assert task is not None

        def fence() -> Fence:
            # Read when each write is sent: a retried attempt (`begin_attempt`) counts one more.
            return Fence.of(task.started_at, task.attempts)

        events = TaskEventWriter(services.events, task.id, fence, appender)
        return cls(task, delivery, events, claim.header)

    def emit(self, event_type: str, data: dict[str, object]) -> None:
        """Queue an event for the task's log (see `TaskEventWriter`)."""
        self.events.emit(event_type, data)

    def take_header(self) -> ContextHeader | None:
        """The claim's context header, the first time it is asked for; None after that."""
        header, self.header = self.header, None
        return header

    @property
    def calling(self) -> bool:
        """Whether its provider call is running now."""
        return self.call is not None and not self.call.done()

    def cancel(self) -> None:
        """Stop the provider call, if one is running (a cancellation, or the worker stopping)."""
        if self.call is not None:
            self.call.cancel()

    def time_out(self) -> None:
        """The task's run bound ran out: stop its call, to be failed as timed out."""
        self.timed_out = True
        self.cancel()

    def keep_lease(self, services: Services, worker_id: str) -> None:
        """Start renewing the lease beside the call (see `keep_lease`)."""
        self.lease = asyncio.create_task(keep_lease(self, services, worker_id))

    async def close(self) -> None:
        """The run is over: stop renewing its lease and write what its events queued up, once."""
        if self.lease is not None:
            self.lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.lease
        await self.events.flush()


async def keep_lease(run: TaskRun, services: Services, worker_id: str) -> None:
    """Renew the lease, and keep the delivery from being handed out, while the task runs.

    A renewal that finds the task no longer ours (cancelled, or taken over after this worker
    stalled) stops the provider call: its result could not be written anyway.
    """
    lease_seconds = services.settings.lease_seconds
    while True:
        await asyncio.sleep(lease_seconds / 3)
        try:
            async with services.db.session() as session:
                ours = await claims.renew_lease(
                    session, run.task, worker_id=worker_id, lease_seconds=lease_seconds
                )
            if not ours:
                run.cancel()
                return
            await services.queue.touch(run.delivery, worker_id)
        except Exception as exc:
            # A missed renewal is retried at the next beat; the lease outlasts two of them.
            log.warning("task %s: lease renewal failed: %s", run.task.id, exc)
