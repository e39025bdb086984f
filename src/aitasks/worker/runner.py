"""The worker loop: receive, claim, run under a renewed lease, write the outcome, acknowledge.

Any number of workers, in any number of processes and machines, share the queues. The database
decides who runs a task (a conditional update); the queue only carries its id, at least once. Beside
the loop, each worker listens for cancellations and takes its turn at reconciling (see
`reconciler.py`). One delivery's whole life is `Worker.process`; what it holds meanwhile is a
`TaskRun` (`run.py`), the provider calls are `calls.py`'s, the outcome writes `outcomes.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Sequence

from aitasks import __version__, logs, metrics, telemetry
from aitasks.errors import DatabaseUnavailable, FileStoreUnavailable, RedisUnavailable
from aitasks.events.base import STATUS
from aitasks.lifecycle import turns
from aitasks.priority import Lane
from aitasks.queue import Delivery
from aitasks.services import Services
from aitasks.store import claims
from aitasks.store.models import TaskStatus, as_utc, new_id, utcnow
from aitasks.warm_freeze import WarmFreeze
from aitasks.webhooks.dispatcher import WebhookDispatcher
from aitasks.worker import deadlines, spans
from aitasks.worker.calls import ProviderCalls
from aitasks.worker.event_writer import EventAppender
from aitasks.worker.flushes import flushes
from aitasks.worker.outcomes import Outcomes
from aitasks.worker.reconciler import Reconciler
from aitasks.worker.retrying import retry_database
from aitasks.worker.run import TaskRun

log = logging.getLogger(__name__)

# How long to wait before asking an unreachable queue again.
QUEUE_RETRY_SECONDS = 1.0
# Attempts a task may take in all, over every claim, before it is failed rather than run again.
MAX_ATTEMPTS_IN_ALL = 20
# How often a worker says it is alive, and how long after its last word it counts as gone.
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TTL_SECONDS = 15.0
# How many of the tasks it runs a heartbeat names.
RUNNING_SHOWN = 20
# How long one receive call blocks before the loop looks around again; and, while only its
# headroom is free, how soon it looks again whether batch work may have a slot.
RECEIVE_WAIT_SECONDS = 5.0
HEADROOM_WAIT_SECONDS = 0.05


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"


class Worker:
    """Runs tasks from `queues`, at most `concurrency` at once (by default the setting's)."""

    def __init__(
        self,
        services: Services,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.queues = list(queues) if queues else services.models.queues
        # Unless given, the setting's (AITASKS_WORKER_CONCURRENCY): one default, not two.
        if concurrency is None:
            concurrency = self.settings.worker_concurrency
        self.concurrency = concurrency
        # Its last slots, which batch work leaves free for the other lanes (see `_lanes`).
        headroom = self.settings.batch_headroom
        self.headroom = min(concurrency - 1, concurrency // 4 if headroom is None else headroom)
        self.worker_id = worker_id or default_worker_id()
        self.reconciler = Reconciler(services)
        self.webhooks = WebhookDispatcher(services)
        self.calls = ProviderCalls(services, worker_id=self.worker_id)
        self.outcomes = Outcomes(services, worker_id=self.worker_id, webhooks=self.webhooks)
        # The round trips of tasks running side by side go together (`flushes.py`): claims
        # of the deliveries of one receive, and acknowledgements and events made meanwhile.
        self._claims = flushes(self._claim_many)
        self._acks = flushes(self._ack_many)
        self.appender = EventAppender(services.events)
        self._in_flight: set[asyncio.Task[None]] = set()
        # The runs claimed now, by task id, so a cancellation can stop one.
        self._runs: dict[str, TaskRun] = {}
        self._stopping = False
        # What running the first deliveries made, frozen out of the collector's sight.
        self.freezes = WarmFreeze()

    async def run(self, stop: asyncio.Event) -> None:
        """Take and run tasks until `stop` is set, then finish or hand back the ones in flight."""
        telemetry.configure("aitasks-worker", version=__version__)  # when OTEL_* asks for it
        log.info(
            "worker %s on queues %s, concurrency %d",
            self.worker_id, ",".join(self.queues), self.concurrency,
        )  # fmt: skip
        await retry_database(self.services.load_secrets, "reading the shared secrets")
        helpers = [
            asyncio.create_task(self._follow_cancellations()),
            asyncio.create_task(self.reconciler.run(stop)),
            asyncio.create_task(self._beat(stop)),
            asyncio.create_task(self.webhooks.run(stop)),
        ]
        try:
            while not stop.is_set():
                free = self.concurrency - len(self._in_flight)
                if free <= 0:
                    await self._until_a_slot_frees(stop)
                    continue
                try:
                    count, lanes = self._room(free)
                    deliveries = await self._receive(count, stop, lanes)
                except RedisUnavailable as exc:
                    log.warning("%s; retrying in %.0fs", exc.message, QUEUE_RETRY_SECONDS)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), QUEUE_RETRY_SECONDS)
                    continue
                for delivery in deliveries:
                    job = asyncio.create_task(self._handle(delivery))
                    self._in_flight.add(job)
                    job.add_done_callback(self._in_flight.discard)
            await self._drain()
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self.calls.close()
            telemetry.flush()

    async def _beat(self, stop: asyncio.Event) -> None:
        """Publish this worker's heartbeat, for `aitasks status` and `/v1/status`."""
        started = utcnow().isoformat()
        while not stop.is_set():
            info = {
                "id": self.worker_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queues": self.queues,
                "concurrency": self.concurrency,
                "in_flight": len(self._in_flight),
                # What it runs (the first few): the operations page shows it.
                "running": [
                    {"task_id": r.task.id, "model": r.task.model, "attempt": r.task.attempts}
                    for r in itertools.islice(self._runs.values(), RUNNING_SHOWN)
                ],
                "started_at": started,
                "last_seen": utcnow().isoformat(),
            }
            with contextlib.suppress(RedisUnavailable):  # the queue loop reports the outage
                await self.services.queue.beat(self.worker_id, info, HEARTBEAT_TTL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)

    async def _until_a_slot_frees(self, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({stopping, *self._in_flight}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()

    async def _drain(self) -> None:
        """Let tasks in flight finish within the grace period; hand the rest back to the queue."""
        if not self._in_flight:
            return
        grace = self.settings.shutdown_grace_seconds
        log.info("stopping: %d task(s) in flight, %.0fs to finish", len(self._in_flight), grace)
        _, unfinished = await asyncio.wait(self._in_flight, timeout=grace)
        if unfinished:
            self._stopping = True
            for run in self._runs.values():
                run.cancel()
            await asyncio.wait(unfinished)

    def _room(self, free: int) -> tuple[int, tuple[Lane, ...] | None]:
        """How many to take, and from which lanes: every lane, as many as batch work may still
        have (what is not yet claimed counted as batch work); once batch work fills all but
        its headroom, only the other lanes, up to every free slot. So a chat turn never waits
        for a slot behind a batch."""
        settled = sum(1 for r in self._runs.values() if r.task.priority != Lane.BATCH)
        room = self.concurrency - self.headroom - (len(self._in_flight) - settled)
        if room > 0:
            return min(free, room), None
        return free, (Lane.INTERACTIVE, Lane.DEFAULT)

    async def _receive(
        self, count: int, stop: asyncio.Event, lanes: tuple[Lane, ...] | None = None
    ) -> list[Delivery]:
        """Wait for deliveries, but return at once (with none) when asked to stop."""
        wait = RECEIVE_WAIT_SECONDS if lanes is None else HEADROOM_WAIT_SECONDS
        receiving = asyncio.ensure_future(
            self.services.queue.receive(
                self.queues, self.worker_id, count=count, wait_seconds=wait, lanes=lanes
            )
        )
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not receiving.done():
            # Anything the server handed out meanwhile stays pending and is redelivered.
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
            return []
        return receiving.result()

    async def _follow_cancellations(self) -> None:
        async for task_id in self.services.queue.cancellations():
            run = self._runs.get(task_id)
            if run is not None and run.calling:
                log.info("task %s cancelled: stopping its provider call", task_id)
                run.cancel()

    async def _handle(self, delivery: Delivery) -> None:
        try:
            with (
                logs.task_context(task_id=delivery.task_id, queue=delivery.queue),
                spans.delivery(delivery),
            ):
                await self.process(delivery)
        except RedisUnavailable as exc:
            # The outcome is safe in the database; the entry is redelivered and dropped later.
            log.warning("task %s: queue unreachable: %s", delivery.task_id, exc.message)
        except (DatabaseUnavailable, FileStoreUnavailable) as exc:
            # A routine outage, not a bug: the task is unfinished and its delivery pending, so it
            # runs again once the database (or the file store) is back.
            log.warning("task %s: %s; it runs again later", delivery.task_id, exc.message)
        except Exception:
            # The task stays unfinished in the database and its delivery pending: it is tried
            # again when the delivery is handed out again, or by the reconciler.
            log.exception("task %s: unexpected error", delivery.task_id)
        finally:
            self.freezes.count()

    async def process(self, delivery: Delivery) -> None:
        """One delivery, start to end: claim its task, run it, write the outcome, acknowledge the
        delivery, then start the conversation's next turn.

        An error that escapes (the database down through every retry of the outcome's write, the
        queue unreachable) leaves the task unfinished and the delivery pending: it runs again.
        """
        if delivery.task_id in self._runs:
            return  # this worker runs it already (the entry came back to it); that run acks it
        with spans.claim(delivery) as claiming:
            claim = await self._claims.hand_in(delivery.task_id)
            claiming.set("aitasks.claim.outcome", claim.outcome.value)
        if claim.outcome is claims.ClaimOutcome.BUSY:
            return  # its holder acknowledges it; if the holder dies, it is handed out again
        if claim.outcome is claims.ClaimOutcome.EXPIRED and claim.task is not None:
            await self._acks.hand_in(delivery)  # past its deadline: never run
            await deadlines.ended_expired(self.services, claim.task, claim.next_turn)
            return
        if claim.task is None:
            await self._acks.hand_in(delivery)  # finished, gone, or waiting on a turn
            return
        run = TaskRun.of(claim, delivery, self.services, self.appender)
        task = run.task
        self._runs[task.id] = run
        try:
            with (
                logs.task_context(model=task.model, attempt=task.attempts),
                spans.run(run, self.worker_id),
            ):
                if self._stopping:
                    await self.outcomes.hand_back(run)  # claimed just as the worker began to stop
                elif task.attempts > MAX_ATTEMPTS_IN_ALL:
                    # Claimed again and again without an outcome (a worker crashing on it each
                    # time): stop paying the provider for it.
                    await self.outcomes.fail(
                        run, "too_many_attempts", f"gave up after {task.attempts - 1} tries"
                    )
                elif (deadlines.run_left(task) or 1) <= 0:
                    # Taken over, or handed back, after its run bound ran out.
                    message = deadlines.timed_out_message(task)
                    await self.outcomes.fail(run, deadlines.TIMEOUT, message)
                else:
                    await self._run(run)
        finally:
            self._runs.pop(task.id, None)
            await run.close()  # the lease is no longer renewed; the run's events are written
        await self._acks.hand_in(delivery)
        if run.finished is not None:
            await turns.publish_next_turn(self.services, run.finished.next_turn)
        elif not run.handed_back:
            await turns.release_next_turn(self.services, task)

    async def _claim_many(self, task_ids: Sequence[str]) -> list[claims.Claim]:
        """The claims of the deliveries submitted together: one statement for all of them."""
        return await claims.claim_deliveries(
            self.services.db,
            task_ids,
            worker_id=self.worker_id,
            lease_seconds=self.settings.lease_seconds,
        )

    async def _ack_many(self, deliveries: Sequence[Delivery]) -> list[None]:
        await self.services.queue.ack_many(deliveries)
        return [None] * len(deliveries)

    async def _run(self, run: TaskRun) -> None:
        """Call the task's model under a renewed lease, then write what came of it (or hand the
        task back, when the call was stopped because the worker is stopping)."""
        task = run.task
        run.emit(STATUS, {"status": TaskStatus.RUNNING, "attempt": task.attempts})
        started = time.monotonic()
        submitted, taken = as_utc(task.created_at), as_utc(task.started_at)
        if task.attempts == 1 and submitted and taken:
            metrics.WAIT_SECONDS.labels(task.queue).observe((taken - submitted).total_seconds())
        metrics.IN_FLIGHT.labels(task.queue).inc()
        call = run.call = asyncio.create_task(self.calls.reply(run))
        bound = deadlines.watch(run)  # the task's `timeout`, across attempts
        # The lease is kept until the outcome is written, not just until the provider answers.
        run.keep_lease(self.services, self.worker_id)
        try:
            await asyncio.wait({call})
            if not call.cancelled():
                await self.outcomes.settle(run, call)
            elif run.timed_out:
                await self.outcomes.fail(run, deadlines.TIMEOUT, deadlines.timed_out_message(task))
            elif self._stopping:
                await self.outcomes.hand_back(run)
            else:
                log.info("task %s: stopped (cancelled, or its lease was lost)", task.id)
        finally:
            if bound is not None:
                bound.cancel()
            metrics.IN_FLIGHT.labels(task.queue).dec()
            metrics.RUN_SECONDS.labels(self.services.models.label_of(task.model)).observe(
                time.monotonic() - started
            )
