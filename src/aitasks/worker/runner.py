"""The worker loop: receive, claim, run under a renewed lease, write the result, acknowledge.

Any number of workers, in any number of processes and machines, share the queues. The database
decides who runs a task (a conditional update); the queue only carries its id, at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence

from aitasks.errors import AITasksError, ProviderError, UnknownModel
from aitasks.providers import ChatRequest, ImageRequest, Provider, make_provider
from aitasks.queue import Delivery, QueueUnavailable
from aitasks.routing import ModelKind, ModelSpec
from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.models import Task, new_id
from aitasks.worker.context import build_context

log = logging.getLogger(__name__)

# How long to wait before asking an unreachable queue again.
QUEUE_RETRY_SECONDS = 1.0
# How long one receive call blocks before the loop looks around again.
RECEIVE_WAIT_SECONDS = 5.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"


class Worker:
    """Runs tasks from `queues`, at most `concurrency` at once."""

    def __init__(
        self,
        services: Services,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 8,
        worker_id: str | None = None,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.queues = list(queues) if queues else services.models.queues
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self._providers: dict[str, Provider] = {}
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Take and run tasks until `stop` is set, then let the ones in flight finish."""
        log.info(
            "worker %s on queues %s, concurrency %d",
            self.worker_id, ",".join(self.queues), self.concurrency,
        )  # fmt: skip
        try:
            while not stop.is_set():
                free = self.concurrency - len(self._in_flight)
                if free == 0:
                    await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    deliveries = await self._receive(free, stop)
                except QueueUnavailable as exc:
                    log.warning("%s; retrying in %.0fs", exc.message, QUEUE_RETRY_SECONDS)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), QUEUE_RETRY_SECONDS)
                    continue
                for delivery in deliveries:
                    job = asyncio.create_task(self._handle(delivery))
                    self._in_flight.add(job)
                    job.add_done_callback(self._in_flight.discard)
            if self._in_flight:
                await asyncio.wait(self._in_flight)
        finally:
            for provider in self._providers.values():
                await provider.close()

    async def _receive(self, count: int, stop: asyncio.Event) -> list[Delivery]:
        """Wait for deliveries, but return at once (with none) when asked to stop."""
        receiving = asyncio.ensure_future(
            self.services.queue.receive(
                self.queues, self.worker_id, count=count, wait_seconds=RECEIVE_WAIT_SECONDS
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

    async def republish_unfinished(self) -> int:
        """Publish every unfinished task again: what an in-process queue held died with it."""
        async with self.services.db.session() as session:
            unfinished = await store.unfinished_tasks(session)
        for task_id, queue in unfinished:
            await self.services.queue.publish(queue, task_id)
        return len(unfinished)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            await self._process(delivery)
        except QueueUnavailable as exc:
            # The result is safe in the database; the entry is redelivered and dropped later.
            log.warning("task %s done but not acknowledged: %s", delivery.task_id, exc.message)
        except Exception:
            # The task stays unfinished in the database and its delivery pending: another try
            # comes when the delivery is handed out again.
            log.exception("task %s: unexpected error", delivery.task_id)

    async def _process(self, delivery: Delivery) -> None:
        async with self.services.db.session() as session:
            claim = await store.claim_task(
                session,
                delivery.task_id,
                worker_id=self.worker_id,
                lease_seconds=self.settings.lease_seconds,
            )
        if claim.outcome is store.ClaimOutcome.BUSY:
            return  # its holder acknowledges it; if the holder dies, it is handed out again
        if claim.task is None:
            await self.services.queue.ack(delivery)  # finished, gone, or waiting on a turn
            return
        task = claim.task
        heartbeat = asyncio.create_task(self._keep_lease(task, delivery))
        try:
            await self._execute(task)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await self.services.queue.ack(delivery)
        await self._release_next_turn(task)

    async def _execute(self, task: Task) -> None:
        """Run the task and write its outcome: the result, or the reason it failed."""
        try:
            spec = self.services.models.resolve(task.model)
            async with asyncio.timeout(spec.timeout_s):
                if spec.kind is ModelKind.CHAT:
                    await self._run_chat(task, spec)
                else:
                    await self._run_image(task, spec)
        except TimeoutError:
            await self._fail(task, "provider_timeout", "the provider did not answer in time")
        except UnknownModel:
            await self._fail(task, "unknown_model", f"model {task.model!r} is no longer configured")
        except ProviderError as exc:
            await self._fail(task, exc.error_type, exc.message)
        except AITasksError as exc:
            await self._fail(task, exc.error_type, exc.message)
        except Exception:
            # A bug, not the provider's doing: fail the task rather than re-run it forever.
            log.exception("task %s: unexpected error while running", task.id)
            await self._fail(task, "internal_error", "the worker hit an unexpected error")

    async def _run_chat(self, task: Task, spec: ModelSpec) -> None:
        async with self.services.db.session() as session:
            history = await store.conversation_messages(
                session, task.conversation_id, before_turn=task.turn
            )
        messages = build_context(history, task.prompt, context_window=spec.context_window)
        pieces = [
            piece async for piece in self._provider(spec).stream_chat(ChatRequest(spec, messages))
        ]
        async with self.services.db.session() as session:
            written = await store.complete_task(
                session, task, worker_id=self.worker_id, text="".join(pieces)
            )
        self._log_outcome(task, written)

    async def _run_image(self, task: Task, spec: ModelSpec) -> None:
        images = await self._provider(spec).generate_images(ImageRequest(spec, task.prompt))
        files: list[store.NewFile] = []
        for image in images:
            file_id = new_id()
            key = f"{task.conversation_id}/{file_id}.png"
            await self.services.storage.put(key, image.data)
            files.append(store.NewFile(file_id, image.content_type, len(image.data), key))
        async with self.services.db.session() as session:
            written = await store.complete_task(
                session, task, worker_id=self.worker_id, text="", files=files
            )
        self._log_outcome(task, written)

    async def _fail(self, task: Task, error_type: str, message: str) -> None:
        async with self.services.db.session() as session:
            written = await store.fail_task(
                session, task, worker_id=self.worker_id, error_type=error_type, message=message
            )
        log.info("task %s failed: %s: %s", task.id, error_type, message)
        self._log_outcome(task, written)

    def _log_outcome(self, task: Task, written: bool) -> None:
        if not written:
            log.warning("task %s: lease lost to another worker; its outcome was not kept", task.id)

    def _provider(self, spec: ModelSpec) -> Provider:
        provider = self._providers.get(spec.served_by)
        if provider is None:
            provider = self._providers[spec.served_by] = make_provider(
                spec.served_by, self.settings
            )
        return provider

    async def _keep_lease(self, task: Task, delivery: Delivery) -> None:
        """Renew the task's lease, and keep its delivery from being handed out, while it runs."""
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.services.db.session() as session:
                    await store.renew_lease(
                        session,
                        task.id,
                        worker_id=self.worker_id,
                        lease_seconds=self.settings.lease_seconds,
                    )
                await self.services.queue.touch(delivery, self.worker_id)
            except Exception as exc:
                # A missed renewal is retried at the next beat; the lease outlasts several beats.
                log.warning("task %s: lease renewal failed: %s", task.id, exc)

    async def _release_next_turn(self, task: Task) -> None:
        """Publish the conversation's next waiting turn, now that this one has finished."""
        async with self.services.db.session() as session:
            waiting = await store.next_waiting_turn(session, task)
        if waiting is not None:
            task_id, queue = waiting
            await self.services.queue.publish(queue, task_id)
