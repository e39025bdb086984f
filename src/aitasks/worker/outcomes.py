"""Writing what came of a run: the result, the failure, or the task handed back at shutdown.

Each write is guarded by the claim (`store/claims.py`): a worker that lost the task writes nothing.
Results and failures are retried through a database outage (`retrying.py`), since the worker
already holds them; if the database stays down, `DatabaseUnavailable` propagates and the task is
left to run again rather than failed. After a written outcome come its consequences: the task's
last events, the webhook wake-up, and the key's limits (its slot in flight freed, its tokens
counted). Releasing the conversation's next turn is the worker's, after the acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aitasks import metrics, telemetry
from aitasks.errors import AITasksError, DatabaseUnavailable, FileStoreUnavailable
from aitasks.events.base import DONE, STATUS
from aitasks.lifecycle.placement import publish, queued
from aitasks.services import Services
from aitasks.store import claims, finishes
from aitasks.store.models import TaskStatus
from aitasks.webhooks.dispatcher import WebhookDispatcher
from aitasks.worker.calls import ClaimLost, Reply
from aitasks.worker.flushes import flushes
from aitasks.worker.retrying import retry_database
from aitasks.worker.run import TaskRun

log = logging.getLogger(__name__)


class Outcomes:
    """The outcome writes of one worker (`worker_id` is what guards them)."""

    def __init__(self, services: Services, *, worker_id: str, webhooks: WebhookDispatcher) -> None:
        self.services = services
        self.worker_id = worker_id
        self.webhooks = webhooks
        # Outcomes written meanwhile share one transaction (see `_write_many`).
        self._finishes = flushes(self._write_many)

    async def _write_many(
        self, outcomes: Sequence[finishes.Outcome]
    ) -> list[claims.Finished | Exception | None]:
        """Write outcomes in one transaction; when that fails other than by an outage (one bad
        outcome), each alone, so only the one that cannot be written fails."""
        try:
            async with self.services.db.session() as session:
                written = await finishes.finish_tasks(session, outcomes, worker_id=self.worker_id)
            return list(written)
        except DatabaseUnavailable:
            raise  # every caller retries (`retry_database`)
        except Exception:
            if len(outcomes) == 1:
                raise
        results: list[claims.Finished | Exception | None] = []
        for outcome in outcomes:
            try:
                async with self.services.db.session() as session:
                    alone = await finishes.finish_tasks(
                        session, [outcome], worker_id=self.worker_id
                    )
                results.append(alone[0])
            except Exception as exc:
                results.append(exc)
        return results

    async def settle(self, run: TaskRun, call: asyncio.Task[Reply]) -> None:
        """Write what a finished (not cancelled) provider call came to."""
        task = run.task
        try:
            reply = call.result()
        except ClaimLost:
            return  # cancelled meanwhile, or taken over: nothing to write
        except (DatabaseUnavailable, FileStoreUnavailable):
            raise  # the database or file store is down: the task runs again, not failed
        except AITasksError as exc:
            await self.fail(run, exc.error_type, exc.message)
        except Exception:
            # A bug, not the provider's doing: fail the task rather than re-run it forever.
            log.exception("task %s: unexpected error while running", task.id)
            await self.fail(run, "internal_error", "the worker hit an unexpected error")
        else:
            await self.complete(run, reply)

    async def complete(self, run: TaskRun, reply: Reply) -> None:
        """Store the reply as the task's result and the conversation's assistant message."""
        task = run.task
        # PostgreSQL text cannot hold NUL; a provider that sends one must not wedge the task.
        text = reply.text.replace("\x00", "")

        outcome = finishes.success(
            task,
            text=text,
            files=reply.files,
            usage=reply.usage,
            served_model=reply.model,
            provider=reply.provider,
            data=reply.data,
        )

        async def write() -> claims.Finished | None:
            return await self._finishes.hand_in(outcome)

        try:
            with telemetry.span("aitasks.result.write", {"aitasks.status": TaskStatus.SUCCESS}):
                written = await retry_database(write, f"task {task.id}: writing the result")
        except DatabaseUnavailable:
            raise  # still down after the retries: the task runs again later
        except Exception:
            log.exception("task %s: the result could not be stored", task.id)
            await self.fail(run, "internal_error", "the result could not be stored")
            return
        if written is not None:
            metrics.TASKS_FINISHED.labels(
                self.services.models.label_of(task.model), task.queue, TaskStatus.SUCCESS
            ).inc()
            await self._ended(run, TaskStatus.SUCCESS, written, reply.usage)
        else:
            log.warning("task %s: no longer ours (cancelled or taken over); reply dropped", task.id)
            await self._forget_files(reply)

    async def _forget_files(self, reply: Reply) -> None:
        """Remove the bytes of files no row names (the reply was dropped), best effort."""
        if reply.files:
            try:
                await self.services.storage.delete([f.storage_key for f in reply.files])
            except Exception as exc:
                log.warning("the files of a dropped reply were not removed: %s", exc)

    async def fail(self, run: TaskRun, error_type: str, message: str) -> None:
        """Mark the task `FAILED` with its reason."""
        task = run.task

        outcome = finishes.failure(task, error_type=error_type, message=message)

        async def write() -> claims.Finished | None:
            return await self._finishes.hand_in(outcome)

        with telemetry.span("aitasks.result.write", {"aitasks.status": TaskStatus.FAILED}):
            written = await retry_database(write, f"task {task.id}: writing the failure")
        if written is not None:
            log.info("task %s failed: %s: %s", task.id, error_type, message)
            telemetry.current().fail(error_type, message)  # the run's span
            metrics.TASKS_FINISHED.labels(
                self.services.models.label_of(task.model), task.queue, TaskStatus.FAILED
            ).inc()
            await self._ended(run, TaskStatus.FAILED, written)

    async def hand_back(self, run: TaskRun) -> None:
        """Give an unfinished task back at shutdown, so another worker takes it at once."""
        task = run.task
        async with self.services.db.session() as session:
            released = await claims.release_task(session, task, worker_id=self.worker_id)
        if released:
            await publish(self.services, queued(task), trace=task.trace_context)
            run.emit(STATUS, {"status": TaskStatus.PENDING})
        run.handed_back = True
        log.info("task %s handed back at shutdown", task.id)

    async def _ended(
        self,
        run: TaskRun,
        status: TaskStatus,
        finished: claims.Finished,
        usage: dict[str, int] | None = None,
    ) -> None:
        """After the outcome is stored: end its stream, send its webhook, free its key's
        in-flight slot and count its tokens."""
        task = run.task
        run.finished = finished
        telemetry.current().set("aitasks.status", status)
        run.emit(STATUS, {"status": status})
        run.emit(DONE, {})
        if task.callback_url:
            self.webhooks.wake()
        if task.api_key_id:
            try:
                # Its slot freed, its token reservation given back and its real usage counted,
                # in one step: no moment where a key's day counts both or neither.
                await self.services.limits.settle(
                    task.api_key_id, task.id, (usage or {}).get("total_tokens", 0)
                )
            except Exception as exc:  # the gateway's check against the database heals a miss
                log.warning("task %s: limits not updated: %s", task.id, exc)
