"""The worker loop: receive, claim, run under a renewed lease, write the result, acknowledge.

Any number of workers, in any number of processes and machines, share the queues. The database
decides who runs a task (a conditional update); the queue only carries its id, at least once. Beside
the loop, each worker listens for cancellations and takes its turn at reconciling (see
`reconciler.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aitasks import logs, metrics
from aitasks.backoff import backoff_seconds
from aitasks.errors import (
    AITasksError,
    DatabaseUnavailable,
    ProviderError,
    ProviderTimeout,
    RedisUnavailable,
    UnknownModel,
)
from aitasks.events.base import DELTA, DONE, STATUS
from aitasks.providers import ChatMessage, ChatRequest, ImageRequest, Provider, make_provider
from aitasks.providers.base import Usage
from aitasks.queue import Delivery
from aitasks.routing import ModelKind, ModelSpec
from aitasks.services import Services
from aitasks.store import claims
from aitasks.store import conversations as history
from aitasks.store import tasks as store
from aitasks.store.models import Message, Task, TaskStatus, as_utc, new_id, utcnow
from aitasks.webhooks.dispatcher import WebhookDispatcher
from aitasks.worker.breaker import CircuitBreaker
from aitasks.worker.context import build_context, estimate_tokens, fit_messages
from aitasks.worker.event_writer import TaskEventWriter
from aitasks.worker.reconciler import Reconciler
from aitasks.worker.retrying import retry_database
from aitasks.worker.summaries import summarise

log = logging.getLogger(__name__)

# How long to wait before asking an unreachable queue again.
QUEUE_RETRY_SECONDS = 1.0
# Attempts a task may take in all, over every claim, before it is failed rather than run again.
MAX_ATTEMPTS_IN_ALL = 20
# How often a worker says it is alive, and how long after its last word it counts as gone.
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TTL_SECONDS = 15.0
# How long one receive call blocks before the loop looks around again.
RECEIVE_WAIT_SECONDS = 5.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"


class ClaimLost(Exception):
    """The task stopped being this worker's between two attempts (cancelled, or taken over)."""


@dataclass(slots=True)
class Reply:
    """What a provider produced for a task, before it is written."""

    text: str = ""
    files: list[claims.NewFile] = field(default_factory=list)
    usage: dict[str, int] | None = None
    # The model that gave it (the task's own, or a fallback) and its provider.
    model: str = ""
    provider: str = ""


def image_size(params: dict[str, object], default: str) -> tuple[int, int]:
    """The "WIDTHxHEIGHT" size asked for, else the model's own."""
    width, _, height = str(params.get("size") or default).partition("x")
    return int(width), int(height)


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
        self.reconciler = Reconciler(services)
        self.webhooks = WebhookDispatcher(services)
        self.breaker = CircuitBreaker()
        self._providers: dict[str, Provider] = {}
        self._model_slots: dict[str, asyncio.Semaphore] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        # The provider calls running now, by task id, so a cancellation can stop one.
        self._running: dict[str, asyncio.Task[Reply | None]] = {}
        self._event_writers: dict[str, TaskEventWriter] = {}
        # Tasks whose outcome's transaction already found (and published) their next turn.
        self._turn_released: set[str] = set()
        # Context headers the claims read, for their tasks' first context (later ones read anew).
        self._headers: dict[str, history.ContextHeader] = {}
        self._stopping = False

    async def run(self, stop: asyncio.Event) -> None:
        """Take and run tasks until `stop` is set, then finish or hand back the ones in flight."""
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
                if free == 0:
                    await self._until_a_slot_frees(stop)
                    continue
                try:
                    deliveries = await self._receive(free, stop)
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
            for provider in self._providers.values():
                await provider.close()

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
            for call in self._running.values():
                call.cancel()
            await asyncio.wait(unfinished)

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

    async def _follow_cancellations(self) -> None:
        async for task_id in self.services.queue.cancellations():
            call = self._running.get(task_id)
            if call is not None:
                log.info("task %s cancelled: stopping its provider call", task_id)
                call.cancel()

    async def _handle(self, delivery: Delivery) -> None:
        try:
            with logs.task_context(task_id=delivery.task_id, queue=delivery.queue):
                await self._process(delivery)
        except RedisUnavailable as exc:
            # The outcome is safe in the database; the entry is redelivered and dropped later.
            log.warning("task %s: queue unreachable: %s", delivery.task_id, exc.message)
        except Exception:
            # The task stays unfinished in the database and its delivery pending: it is tried
            # again when the delivery is handed out again, or by the reconciler.
            log.exception("task %s: unexpected error", delivery.task_id)
        finally:
            if delivery.task_id not in self._running:
                self._turn_released.discard(delivery.task_id)  # left by a run that broke off

    async def _process(self, delivery: Delivery) -> None:
        if delivery.task_id in self._running:
            return  # this worker runs it already (the entry came back to it); that run acks it
        async with self.services.db.session() as session:
            claim = await claims.claim_task(
                session,
                delivery.task_id,
                worker_id=self.worker_id,
                lease_seconds=self.settings.lease_seconds,
            )
        if claim.outcome is claims.ClaimOutcome.BUSY:
            return  # its holder acknowledges it; if the holder dies, it is handed out again
        if claim.task is None:
            await self.services.queue.ack(delivery)  # finished, gone, or waiting on a turn
            return
        task = claim.task
        if claim.header is not None:
            self._headers[task.id] = claim.header
        try:
            with logs.task_context(model=task.model, attempt=task.attempts):
                await self._run_claimed(task, delivery)
        finally:
            self._headers.pop(task.id, None)

    async def _run_claimed(self, task: Task, delivery: Delivery) -> None:
        if self._stopping:
            await self._hand_back(task, delivery)  # claimed just as the worker began to stop
            return
        if task.attempts > MAX_ATTEMPTS_IN_ALL:
            # Claimed again and again without an outcome (a worker crashing on it each time):
            # stop paying the provider for it.
            await self._fail(task, "too_many_attempts", f"gave up after {task.attempts - 1} tries")
            await self.services.queue.ack(delivery)
            await self._release_next_turn(task)
            return
        self._emit(task.id, STATUS, {"status": TaskStatus.RUNNING, "attempt": task.attempts})
        started = time.monotonic()
        submitted, taken = as_utc(task.created_at), as_utc(task.started_at)
        if task.attempts == 1 and submitted and taken:
            metrics.WAIT_SECONDS.labels(task.queue).observe((taken - submitted).total_seconds())
        metrics.IN_FLIGHT.labels(task.queue).inc()
        call = asyncio.create_task(self._call_with_retries(task))
        self._running[task.id] = call
        # The lease is kept until the outcome is written, not just until the provider answers.
        heartbeat = asyncio.create_task(self._keep_lease(task, delivery, call))
        try:
            await asyncio.wait({call})
            self._running.pop(task.id, None)
            if call.cancelled():
                if self._stopping:
                    await self._hand_back(task, delivery)
                    return
                log.info("task %s: stopped (cancelled, or its lease was lost)", task.id)
            else:
                reply = call.result()
                if reply is not None:
                    await self._complete(task, reply)
        finally:
            self._running.pop(task.id, None)
            metrics.IN_FLIGHT.labels(task.queue).dec()
            metrics.RUN_SECONDS.labels(task.model).observe(time.monotonic() - started)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self._flush_events(task.id)
        await self.services.queue.ack(delivery)
        await self._release_next_turn(task)

    async def _call_with_retries(self, task: Task) -> Reply | None:
        """Call the model, then its fallbacks in order, until one answers.

        Returns the reply, or None once the task's failure has been written.
        """
        try:
            chain = self._model_chain(task.model)
        except UnknownModel:
            await self._fail(task, "unknown_model", f"model {task.model!r} is no longer configured")
            return None
        try:
            for index, spec in enumerate(chain):
                if index > 0:
                    log.info("task %s: falling back to %s", task.id, spec.name)
                    metrics.FALLBACKS.labels(chain[index - 1].name).inc()
                    if not await self._next_attempt(task, model=spec.name):
                        return None
                try:
                    return await self._call_model(task, spec)
                except ProviderError as exc:
                    if index == len(chain) - 1:
                        await self._fail(task, exc.error_type, exc.message)
                        return None
        except ClaimLost:
            return None  # cancelled meanwhile, or taken over: nothing to write
        except DatabaseUnavailable:
            raise  # the database is down: the task is left to run again, not failed
        except AITasksError as exc:
            await self._fail(task, exc.error_type, exc.message)
        except Exception:
            # A bug, not the provider's doing: fail the task rather than re-run it forever.
            log.exception("task %s: unexpected error while running", task.id)
            await self._fail(task, "internal_error", "the worker hit an unexpected error")
        return None

    def _model_chain(self, name: str) -> list[ModelSpec]:
        spec = self.services.models.resolve(name)
        return [spec, *(self.services.models.resolve(f) for f in spec.fallbacks)]

    async def _call_model(self, task: Task, spec: ModelSpec) -> Reply:
        """Try one model up to its `max_attempts`, retrying what is retryable after backoff.

        Raises the last `ProviderError` when the model has failed for good.
        """
        tries = 1
        while True:
            calling = time.monotonic()
            try:
                self.breaker.before_call(spec.name)
                reply = await self._call_provider(task, spec)
            except ProviderError as exc:
                metrics.PROVIDER_SECONDS.labels(spec.name, spec.served_by, exc.error_type).observe(
                    time.monotonic() - calling
                )
                if exc.retryable:
                    self.breaker.failed(spec.name)
                if not exc.retryable or tries >= spec.max_attempts:
                    raise
                metrics.RETRIES.labels(spec.name).inc()
                delay = backoff_seconds(
                    tries,
                    base=self.settings.retry_base_seconds,
                    cap=self.settings.retry_max_seconds,
                    at_least=exc.retry_after,
                )
                log.info(
                    "task %s: %s attempt %d failed (%s); retrying in %.1fs",
                    task.id, spec.name, tries, exc.message, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                if not await self._next_attempt(task, model=spec.name):
                    raise ClaimLost(task.id) from exc
                tries += 1
                continue
            metrics.PROVIDER_SECONDS.labels(spec.name, spec.served_by, "ok").observe(
                time.monotonic() - calling
            )
            self.breaker.succeeded(spec.name)
            reply.model, reply.provider = spec.name, spec.served_by
            return reply

    async def _next_attempt(self, task: Task, *, model: str) -> bool:
        """Count another attempt; tell stream readers the reply starts again from here."""
        if not await self._begin_attempt(task):
            return False
        logs.set_attempt(task.attempts)
        status = {"status": TaskStatus.RUNNING, "attempt": task.attempts, "model": model}
        self._emit(task.id, STATUS, status)
        return True

    async def _call_provider(self, task: Task, spec: ModelSpec) -> Reply:
        """One attempt, within the model's limits: its calls in flight here, its calls a minute
        across all workers."""
        slots = self._model_slots.get(spec.name)
        if slots is None and spec.concurrency:
            slots = self._model_slots[spec.name] = asyncio.Semaphore(spec.concurrency)
        async with slots or contextlib.nullcontext():
            await self._wait_for_rate(spec)
            return await self._call_provider_once(task, spec)

    async def _wait_for_rate(self, spec: ModelSpec) -> None:
        """Wait for a slot in the model's shared `rpm` budget, so the fleet does not earn 429s."""
        if not spec.rpm:
            return
        while True:
            try:
                wait = await self.services.queue.rate_slot(f"rpm:{spec.name}", spec.rpm, 60.0)
            except RedisUnavailable:
                return  # limiting is best effort; the provider's own 429s are still retried
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def _call_provider_once(self, task: Task, spec: ModelSpec) -> Reply:
        """One attempt: the provider's reply, under the model's timeout."""
        provider = self._provider(spec)
        params = task.params or {}
        if spec.kind is ModelKind.CHAT:
            messages = await self._context(task, spec)
            request = ChatRequest(spec, messages, attempt=task.attempts, params=params)
            pieces: list[str] = []
            reported: Usage | None = None
            try:
                async with asyncio.timeout(spec.timeout_s):
                    async for piece in provider.stream_chat(request):
                        if isinstance(piece, Usage):
                            reported = piece
                            continue
                        pieces.append(piece)
                        self._emit(task.id, DELTA, {"delta": piece})
            except TimeoutError:
                raise ProviderTimeout(f"no reply within {spec.timeout_s:g}s") from None
            text = "".join(pieces)
            # The provider's own count where it gives one; else the documented estimate.
            usage = reported or Usage(
                prompt_tokens=sum(estimate_tokens(m.content) for m in messages),
                completion_tokens=(len(text) + 3) // 4,
            )
            return Reply(text=text, usage=usage.as_dict())
        request_images = ImageRequest(
            spec,
            task.prompt,
            n=int(params.get("n") or 1),
            size=image_size(params, spec.size),
            attempt=task.attempts,
            params=params,
        )
        try:
            async with asyncio.timeout(spec.timeout_s):
                images = await provider.generate_images(request_images)
        except TimeoutError:
            raise ProviderTimeout(f"no images within {spec.timeout_s:g}s") from None
        reply = Reply()
        for image in images:
            file_id = new_id()
            key = f"{task.conversation_id}/{file_id}.png"
            await self.services.storage.put(key, image.data)
            reply.files.append(claims.NewFile(file_id, image.content_type, len(image.data), key))
        return reply

    async def _context(self, task: Task, spec: ModelSpec) -> list[ChatMessage]:
        """The messages before the prompt: the client's own, or the conversation's history."""
        if task.context is not None:
            given = [ChatMessage(m["role"], m["content"]) for m in task.context]
            return fit_messages(given, task.prompt, context_window=spec.context_window)
        header = self._headers.pop(task.id, None)
        earlier: Sequence[Message] = []  # a first turn has no history
        if header is None or task.turn > 1:
            # (A first turn with its claim's header opens no session: even an unused one costs a
            # task of its own to close.)
            async with self.services.db.session() as session:
                earlier = await history.earlier_messages(session, task.conversation_id, task.turn)
                if header is None:
                    header = await history.context_header(session, task.conversation_id)
        system, stored, covered = header
        window = spec.context_window
        fitted = build_context(earlier, task.prompt, context_window=window, system=system)
        if not fitted.dropped_through or not spec.summary_model:
            return fitted.messages
        summary, through = await self._summary(
            task, spec, earlier, fitted.dropped_through, stored, covered
        )
        if summary is None:
            return fitted.messages  # no summary to be had: the oldest turns are just left out
        rest = [m for m in earlier if m.turn > through]
        return build_context(
            rest, task.prompt, context_window=window, system=system, summary=summary
        ).messages

    async def _summary(
        self,
        task: Task,
        spec: ModelSpec,
        earlier: Sequence[Message],
        dropped_through: int,
        stored: str | None,
        covered: int,
    ) -> tuple[str | None, int]:
        """The conversation's summary covering at least the dropped turns: the stored one, or one
        made now (folding the newly dropped turns into it) and kept for the next turns."""
        if stored is not None and covered >= dropped_through:
            return stored, covered
        assert spec.summary_model is not None
        summary_spec = self.services.models.resolve(spec.summary_model)
        dropped = [m for m in earlier if covered < m.turn <= dropped_through]
        try:
            summary = await summarise(self._provider(summary_spec), summary_spec, stored, dropped)
        except (ProviderError, TimeoutError) as exc:
            log.warning("task %s: could not summarise early turns: %s", task.id, exc)
            return (stored, covered) if stored is not None else (None, 0)
        async with self.services.db.session() as session:
            await history.save_summary(session, task.conversation_id, summary, dropped_through)
        return summary, dropped_through

    async def _complete(self, task: Task, reply: Reply) -> None:
        # PostgreSQL text cannot hold NUL; a provider that sends one must not wedge the task.
        text = reply.text.replace("\x00", "")

        async def write() -> claims.Finished | None:
            async with self.services.db.session() as session:
                return await claims.complete_task(
                    session,
                    task,
                    worker_id=self.worker_id,
                    text=text,
                    files=reply.files,
                    usage=reply.usage,
                    served_model=reply.model,
                    provider=reply.provider,
                )

        try:
            written = await retry_database(write, f"task {task.id}: writing the result")
        except DatabaseUnavailable:
            raise  # still down after the retries: the task runs again later
        except Exception:
            log.exception("task %s: the result could not be stored", task.id)
            await self._fail(task, "internal_error", "the result could not be stored")
            return
        if written is not None:
            metrics.TASKS_FINISHED.labels(task.model, task.queue, TaskStatus.SUCCESS).inc()
            await self._ended(task, TaskStatus.SUCCESS, written, reply.usage)
        else:
            log.warning("task %s: no longer ours (cancelled or taken over); reply dropped", task.id)

    async def _fail(self, task: Task, error_type: str, message: str) -> None:
        async def write() -> claims.Finished | None:
            async with self.services.db.session() as session:
                return await claims.fail_task(
                    session, task, worker_id=self.worker_id, error_type=error_type, message=message
                )

        written = await retry_database(write, f"task {task.id}: writing the failure")
        if written is not None:
            log.info("task %s failed: %s: %s", task.id, error_type, message)
            metrics.TASKS_FINISHED.labels(task.model, task.queue, TaskStatus.FAILED).inc()
            await self._ended(task, TaskStatus.FAILED, written)

    def _emit(self, task_id: str, event_type: str, data: dict[str, object]) -> None:
        """Queue an event for the task's log (see `TaskEventWriter`)."""
        writer = self._event_writers.get(task_id)
        if writer is None:
            writer = self._event_writers[task_id] = TaskEventWriter(self.services.events, task_id)
        writer.emit(event_type, data)

    async def _flush_events(self, task_id: str) -> None:
        """Write what the task's run queued, and let its writer go."""
        writer = self._event_writers.pop(task_id, None)
        if writer is not None:
            await writer.flush()

    async def _ended(
        self,
        task: Task,
        status: TaskStatus,
        finished: claims.Finished,
        usage: dict[str, int] | None = None,
    ) -> None:
        """After the outcome is stored: end its stream, start the next turn, free its key's
        in-flight slot, count its tokens, and send its webhook."""
        self._emit(task.id, STATUS, {"status": status})
        self._emit(task.id, DONE, {})
        self._turn_released.add(task.id)
        if finished.next_turn is not None:
            task_id, queue = finished.next_turn
            await self.services.queue.publish(queue, task_id)
        await self._flush_events(task.id)
        if task.callback_url:
            self.webhooks.wake()
        if task.api_key_id:
            try:
                await self.services.limits.release(task.api_key_id, [task.id])
                await self.services.limits.add_tokens(
                    task.api_key_id, (usage or {}).get("total_tokens", 0)
                )
            except Exception as exc:  # the gateway's check against the database heals a miss
                log.warning("task %s: limits not updated: %s", task.id, exc)

    async def _begin_attempt(self, task: Task) -> bool:
        async with self.services.db.session() as session:
            return await claims.begin_attempt(
                session, task, worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds
            )

    async def _hand_back(self, task: Task, delivery: Delivery) -> None:
        """Give an unfinished task back at shutdown, so another worker takes it at once."""
        async with self.services.db.session() as session:
            released = await claims.release_task(session, task, worker_id=self.worker_id)
        if released:
            await self.services.queue.publish(task.queue, task.id)
            self._emit(task.id, STATUS, {"status": TaskStatus.PENDING})
        await self._flush_events(task.id)
        await self.services.queue.ack(delivery)
        log.info("task %s handed back at shutdown", task.id)

    def _provider(self, spec: ModelSpec) -> Provider:
        """One provider client per model, made when the model is first used and kept."""
        provider = self._providers.get(spec.name)
        if provider is None:
            provider = self._providers[spec.name] = make_provider(spec, self.settings)
        return provider

    async def _keep_lease(
        self, task: Task, delivery: Delivery, call: asyncio.Task[Reply | None]
    ) -> None:
        """Renew the lease, and keep the delivery from being handed out, while the task runs.

        A renewal that finds the task no longer ours (cancelled, or taken over after this worker
        stalled) stops the provider call: its result could not be written anyway.
        """
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.services.db.session() as session:
                    ours = await claims.renew_lease(
                        session,
                        task,
                        worker_id=self.worker_id,
                        lease_seconds=self.settings.lease_seconds,
                    )
                if not ours:
                    call.cancel()
                    return
                await self.services.queue.touch(delivery, self.worker_id)
            except Exception as exc:
                # A missed renewal is retried at the next beat; the lease outlasts two of them.
                log.warning("task %s: lease renewal failed: %s", task.id, exc)

    async def _release_next_turn(self, task: Task) -> None:
        """Publish the conversation's next waiting turn, now that this one has finished (unless
        the transaction that wrote its outcome did already)."""
        if task.id in self._turn_released:
            self._turn_released.discard(task.id)
            return
        async with self.services.db.session() as session:
            waiting = await store.next_waiting_turn(session, task)
        if waiting is not None:
            task_id, queue = waiting
            await self.services.queue.publish(queue, task_id)
