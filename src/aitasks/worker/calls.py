"""Calling the model for a task: its fallback chain, retries with backoff, the circuit breaker, the
model's concurrency and rate slots, the timeout, and (for images) storing what comes back.

`ProviderCalls.reply` returns the reply, or raises: `ClaimLost` when the task stopped being this
worker's between two attempts (nothing to write), the last `ProviderError` when every model of the
chain failed for good, or whatever else went wrong. The worker decides what each means for the
task; this module never writes an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aitasks import logs, metrics, telemetry
from aitasks.backoff import backoff_seconds
from aitasks.errors import (
    AITasksError,
    DatabaseUnavailable,
    FileStoreUnavailable,
    ProviderError,
    ProviderTimeout,
    RedisUnavailable,
    UnknownModel,
)
from aitasks.events.base import DELTA, REASONING, STATUS, TOOL_CALL
from aitasks.files import file_key
from aitasks.providers import ImageRequest, Provider
from aitasks.providers.base import Reasoning, ToolCall, Usage
from aitasks.providers.messages import stored_call
from aitasks.providers.pool import ProviderPool
from aitasks.queue import RateSlot, TaskQueue
from aitasks.routing import ModelKind, ModelSpec
from aitasks.services import Services
from aitasks.store import claims
from aitasks.store.models import TaskStatus, new_id
from aitasks.worker import spans
from aitasks.worker.breaker import CircuitBreaker
from aitasks.worker.chat_request import chat_request, check_reply, reply_data
from aitasks.worker.context import message_tokens
from aitasks.worker.history import chat_context
from aitasks.worker.run import TaskRun

log = logging.getLogger(__name__)

# Tries at storing a made file before the attempt fails (about 3 s of backoff between them).
STORE_TRIES = 4
# How much longer than its call's timeout an `rpm` slot is held undated, at most (the Redis call
# that dates it); past that the slot's caller has died.
RPM_HOLD_MARGIN_SECONDS = 10.0


class ClaimLost(Exception):
    """The task stopped being this worker's between two attempts (cancelled, or taken over)."""


class ModelGone(AITasksError):
    """The task's model left the model table between its submit and its run."""

    error_type = "unknown_model"


@dataclass(slots=True)
class Reply:
    """What a provider produced for a task, before it is written."""

    text: str = ""
    files: list[claims.NewFile] = field(default_factory=list)
    usage: dict[str, int] | None = None
    # The tool calls and reasoning of a chat reply, stored with it (`providers.messages`).
    data: dict[str, object] | None = None
    # The model that gave it (the task's own, or a fallback) and its provider.
    model: str = ""
    provider: str = ""


class RpmHold:
    """A call's slot in its model's `rpm` budget, from its taking until it is dated.

    The provider counts a call when it reaches it, some time after the slot is taken (a connection
    made, the request sent, a busy event loop). So the slot is counted as reaching the provider
    any moment until `reached` dates it: when the answer begins (the provider had it by then), or
    when the call is over, whichever comes first (see `TaskQueue.rate_slot`).
    """

    def __init__(self, queue: TaskQueue, slot: RateSlot | None) -> None:
        self._queue = queue
        self._slot = slot

    @property
    def pending(self) -> bool:
        """Whether the slot is still to be dated."""
        return self._slot is not None

    async def reached(self) -> None:
        """Date the slot to now, the first time (best effort: an undated slot stays counted
        until its hold runs out, which only keeps the budget on the safe side)."""
        slot, self._slot = self._slot, None
        if slot is not None:
            with contextlib.suppress(RedisUnavailable):
                await self._queue.rate_slot_reached(slot)


async def store_file(services: Services, key: str, data: bytes, content_type: str) -> None:
    """Put a made file's bytes in the store, trying again a few times over a store's blip (the
    bytes are in hand: calling the provider again would cost more). Raises the store's
    `ServiceUnavailable` when it stays down: the attempt has failed, and the task is left to run
    again, as through a database outage."""
    for tries in range(1, STORE_TRIES + 1):
        try:
            await services.storage.put(key, data, content_type=content_type)
            return
        except (FileStoreUnavailable, DatabaseUnavailable) as exc:
            if tries == STORE_TRIES:
                raise
            log.warning("storing a file failed (%s); trying again", exc.message)
            await asyncio.sleep(backoff_seconds(tries, base=0.5, cap=4.0))


def image_size(params: dict[str, object], default: str) -> tuple[int, int]:
    """The "WIDTHxHEIGHT" size asked for, else the model's own."""
    width, _, height = str(params.get("size") or default).partition("x")
    return int(width), int(height)


class ProviderCalls:
    """The provider side of one worker: a client per upstream, and a concurrency slot, an rpm
    budget and a circuit breaker per model, shared by every task the worker runs.

    Models are told apart by `ModelTable.label_of`: their own name when it is in the table, else
    the rule that routes them. Names routed by a rule are the caller's text, so anything kept
    per name would grow with what callers send (and a limit per name would be no limit)."""

    # The window a model's `rpm` counts calls in. A test makes it shorter, to see many windows go
    # by in a few seconds; the limit is `rpm` calls per window either way.
    rpm_window_seconds = 60.0

    def __init__(self, services: Services, *, worker_id: str) -> None:
        self.services = services
        self.settings = services.settings
        self.worker_id = worker_id
        self.breaker = CircuitBreaker()
        self.providers = ProviderPool(self.settings)
        self._model_slots: dict[str, asyncio.Semaphore] = {}

    async def reply(self, run: TaskRun) -> Reply:
        """Call the task's model, then its fallbacks in order, until one answers."""
        task = run.task
        try:
            chain = self._model_chain(task.model)
        except UnknownModel:
            raise ModelGone(f"model {task.model!r} is no longer configured") from None
        for index, spec in enumerate(chain):
            if index > 0:
                log.info("task %s: falling back to %s", task.id, spec.name)
                metrics.FALLBACKS.labels(self._label(chain[index - 1])).inc()
                with telemetry.span("aitasks.fallback", {"aitasks.model": spec.name}):
                    await self._next_attempt(run, model=spec.name)
            try:
                return await self._call_model(run, spec)
            except ProviderError:
                if index == len(chain) - 1:
                    raise
        raise AssertionError("a model chain is never empty")

    async def close(self) -> None:
        """Close the provider clients made so far."""
        await self.providers.close()

    def _model_chain(self, name: str) -> list[ModelSpec]:
        spec = self.services.models.resolve(name)
        return [spec, *(self.services.models.resolve(f) for f in spec.fallbacks)]

    async def _call_model(self, run: TaskRun, spec: ModelSpec) -> Reply:
        """Try one model up to its `max_attempts`, retrying what is retryable after backoff.

        Raises the last `ProviderError` when the model has failed for good.
        """
        tries = 1
        label = self._label(spec)
        while True:
            calling = time.monotonic()
            try:
                self.breaker.before_call(label)
                reply = await self._call_provider(run, spec)
            except ProviderError as exc:
                metrics.PROVIDER_SECONDS.labels(label, spec.served_by, exc.error_type).observe(
                    time.monotonic() - calling
                )
                if exc.retryable:
                    self.breaker.failed(label)
                if not exc.retryable or tries >= spec.max_attempts:
                    raise
                metrics.RETRIES.labels(label).inc()
                delay = backoff_seconds(
                    tries,
                    base=self.settings.retry_base_seconds,
                    cap=self.settings.retry_max_seconds,
                    at_least=exc.retry_after,
                )
                log.info(
                    "task %s: %s attempt %d failed (%s); retrying in %.1fs",
                    run.task.id, spec.name, tries, exc.message, delay,
                )  # fmt: skip
                telemetry.current().event("aitasks.retry", {"aitasks.retry_in_s": delay})
                await asyncio.sleep(delay)
                await self._next_attempt(run, model=spec.name, after=exc)
                tries += 1
                continue
            metrics.PROVIDER_SECONDS.labels(label, spec.served_by, "ok").observe(
                time.monotonic() - calling
            )
            self.breaker.succeeded(label)
            reply.model, reply.provider = spec.name, spec.served_by
            return reply

    async def _next_attempt(
        self, run: TaskRun, *, model: str, after: BaseException | None = None
    ) -> None:
        """Count another attempt; tell stream readers the reply starts again from here. Raises
        `ClaimLost` when the task is no longer this worker's."""
        task = run.task
        async with self.services.db.session() as session:
            counted = await claims.begin_attempt(
                session, task, worker_id=self.worker_id, lease_seconds=self.settings.lease_seconds
            )
        if not counted:
            raise ClaimLost(task.id) from after
        logs.set_attempt(task.attempts)
        run.emit(STATUS, {"status": TaskStatus.RUNNING, "attempt": task.attempts, "model": model})

    async def _call_provider(self, run: TaskRun, spec: ModelSpec) -> Reply:
        """One attempt, within the model's limits: its calls in flight here, and (around the call
        itself, once its context is ready) its calls a minute across all workers."""
        label = self._label(spec)
        slots = self._model_slots.get(label)
        if slots is None and spec.concurrency:
            slots = self._model_slots[label] = asyncio.Semaphore(spec.concurrency)
        async with spans.attempt(run, spec), slots or contextlib.nullcontext():
            if spec.kind is ModelKind.CHAT:
                return await self._chat(run, spec)
            return await self._images(run, spec)

    @contextlib.asynccontextmanager
    async def _rpm(self, spec: ModelSpec) -> AsyncIterator[RpmHold]:
        """Wait for a slot in the model's shared `rpm` budget, so the fleet does not earn 429s;
        the call is made inside, and the slot dated when the provider has it (see `RpmHold`)."""
        hold = RpmHold(self.services.queue, await self._wait_for_rate(spec))
        try:
            yield hold
        finally:
            await hold.reached()

    async def _wait_for_rate(self, spec: ModelSpec) -> RateSlot | None:
        """A slot in the model's `rpm` budget, when it has one (taken once the wait is over)."""
        if not spec.rpm:
            return None
        # The slot counts as reaching the provider until it is dated: for as long as the call
        # may take, and a little longer for the Redis call that dates it.
        held_for = spec.timeout_s + RPM_HOLD_MARGIN_SECONDS
        with spans.rate_slot(spec):
            while True:
                try:
                    slot = await self.services.queue.rate_slot(
                        f"rpm:{self._label(spec)}",
                        spec.rpm,
                        self.rpm_window_seconds,
                        held_for=held_for,
                    )
                except RedisUnavailable:
                    return None  # limiting is best effort; the provider's own 429s still retry
                if isinstance(slot, RateSlot):
                    return slot
                await asyncio.sleep(slot)

    async def _chat(self, run: TaskRun, spec: ModelSpec) -> Reply:
        """One chat attempt: the reply streamed into the task's events, under the timeout."""
        task = run.task
        messages = await chat_context(
            self.services, task, spec, header=run.take_header(), provider_for=self.provider
        )
        request = chat_request(spec, messages, task.attempts, task.params or {})
        pieces: list[str] = []
        reasoning: list[str] = []
        calls: list[ToolCall] = []
        reported: Usage | None = None
        try:
            async with (
                self._rpm(spec) as rpm,
                spans.model_call(request) as call,
                asyncio.timeout(spec.timeout_s),
            ):
                async for piece in call.stream(self.provider(spec).stream_chat(request)):
                    if rpm.pending:
                        await rpm.reached()  # the answer began: the provider has the call
                    if isinstance(piece, Usage):
                        reported = piece
                    elif isinstance(piece, Reasoning):
                        reasoning.append(piece.text)
                        run.emit(REASONING, {"delta": piece.text})
                    elif isinstance(piece, ToolCall):
                        calls.append(piece)
                        run.emit(TOOL_CALL, stored_call(piece))
                    else:
                        pieces.append(piece)
                        run.emit(DELTA, {"delta": piece})
        except TimeoutError:
            raise ProviderTimeout(f"no reply within {spec.timeout_s:g}s") from None
        text = check_reply(request, "".join(pieces), calls)
        # The provider's own count where it gives one; else the documented estimate.
        usage = reported or Usage(
            prompt_tokens=sum(message_tokens(m) for m in request.messages),
            completion_tokens=(len(text) + sum(len(c.arguments) for c in calls) + 3) // 4,
        )
        data = reply_data(calls, "".join(reasoning))
        return Reply(text=text, usage=usage.as_dict(), data=data)

    async def _images(self, run: TaskRun, spec: ModelSpec) -> Reply:
        """One image attempt under the timeout; the images go to file storage."""
        task = run.task
        params = task.params or {}
        request = ImageRequest(
            spec,
            task.prompt,
            n=int(params.get("n") or 1),
            size=image_size(params, spec.size),
            attempt=task.attempts,
            params=params,
        )
        try:
            async with (
                self._rpm(spec),
                spans.model_call(request) as call,
                asyncio.timeout(spec.timeout_s),
            ):
                images = await self.provider(spec).generate_images(request)
                call.images(len(images))
        except TimeoutError:
            raise ProviderTimeout(f"no images within {spec.timeout_s:g}s") from None
        reply = Reply()
        for image in images:
            file_id = new_id()
            key = file_key(file_id)
            # Written before the outcome's transaction names them: a task never points at
            # nothing. A store still failing after the retries fails the attempt, and the task
            # runs again (see `store_file`).
            await store_file(self.services, key, image.data, image.content_type)
            reply.files.append(claims.NewFile(file_id, image.content_type, len(image.data), key))
        return reply

    def provider(self, spec: ModelSpec) -> Provider:
        """The client of the upstream that serves `spec` (made on first use, then shared)."""
        return self.providers.get(spec)

    def _label(self, spec: ModelSpec) -> str:
        return self.services.models.label_of(spec.name)
