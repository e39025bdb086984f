"""Batches: many requests accepted as one, checked whole before any is queued, written in bulk,
run in the batch lane, and ended once every task of theirs has ended.

A surface (the seed's `POST /v1/batches`, OpenAI's `POST /openai/v1/batches`) parses its lines
into `BatchRequest`s, with the errors of the lines it could not parse; `create_batch` checks the
rest (model, kind, prompt, custom_id, conversation) and either records the batch `failed` with
every bad line's number and reason, queueing nothing, or writes all its tasks in one
transaction (`store/batches.py`) and hands them to their queues in bulk. Its tasks count their
tokens against the key's daily quota (a batch whose estimate is past what is left today is
refused whole) but not against its tasks in flight: they wait in the batch lane instead.

The reconciler ends batches (`finish_batches`): once no task of a batch is unfinished, its
counts are kept, its output and error files recorded (OpenAI's; their bytes are made from the
tasks when read, `lifecycle/batch_output.py`) and its status set: `completed`, `expired` (some
line was not started within the completion window) or `cancelled`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from aitasks import metrics, telemetry
from aitasks.auth.caller import Caller
from aitasks.errors import AITasksError, RateLimited, RedisUnavailable
from aitasks.files import file_key
from aitasks.lifecycle.batch_output import result_size
from aitasks.lifecycle.stop import stop_task
from aitasks.lifecycle.submit import refuse_lone_surrogates
from aitasks.limits.tokens import chat_estimate
from aitasks.priority import Lane, Placement
from aitasks.routing import ModelKind, ModelSpec
from aitasks.services import Services
from aitasks.store import batches as store
from aitasks.store.models import Batch, TaskStatus, new_id, utcnow
from aitasks.store.tasks import Owner

log = logging.getLogger(__name__)

# OpenAI's only completion window, and how long a batch's lines may wait to start.
COMPLETION_WINDOWS = {"24h": timedelta(hours=24)}
# The errors a failed batch keeps (the first ones, by line).
MAX_ERRORS = 1000
# Still running: its tasks' statuses are counted live.
GOING = ("in_progress", "cancelling")


@dataclass(frozen=True, slots=True)
class LineError:
    """Why one line of a batch is refused (`line`: from 1, as a file's lines are numbered)."""

    line: int
    code: str
    message: str
    param: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One line of a batch as its surface parsed it."""

    line: int
    # None: whatever kind its model is (the seed's batches, whose lines name only a model).
    kind: ModelKind | None
    model: str
    prompt: str
    custom_id: str | None = None
    conversation_id: str | None = None
    params: dict[str, Any] | None = None
    context: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a batch has come: its tasks by status."""

    total: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def succeeded(self) -> int:
        return self.counts.get(TaskStatus.SUCCESS, 0)

    @property
    def ended(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("SUCCESS", "FAILED", "CANCELLED", "EXPIRED"))

    @property
    def failed(self) -> int:
        """Lines that ended without an answer: failed, expired or cancelled."""
        return self.ended - self.succeeded


def _check(
    services: Services, requests: Sequence[BatchRequest], turns: dict[str, int]
) -> tuple[list[store.NewLine], list[LineError]]:
    """Each line checked as a submit checks its request, without writing anything."""
    lines: list[store.NewLine] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    wanted: dict[str, int] = {}
    settings = services.settings
    for index, request in enumerate(requests):

        def refuse(code: str, message: str, param: str | None, at: int = request.line) -> None:
            errors.append(LineError(at, code, message, param))

        if request.custom_id is not None:
            if request.custom_id in seen:
                refuse("duplicate_custom_id", f"custom_id {request.custom_id!r} is used twice",
                       "custom_id")  # fmt: skip
                continue
            seen.add(request.custom_id)
        try:
            refuse_lone_surrogates(
                [("prompt", request.prompt), ("model", request.model),
                 ("messages", request.context), *(request.params or {}).items()]
            )  # fmt: skip
            spec: ModelSpec = (
                services.models.resolve(request.model)
                if request.kind is None
                else services.models.resolve_kind(request.model, request.kind)
            )
        except AITasksError as exc:
            refuse(exc.error_type, exc.message, exc.param)
            continue
        if not request.prompt.strip():
            refuse("invalid_request", "the request has no prompt", "prompt")
            continue
        if len(request.prompt) > settings.max_prompt_chars:
            refuse("payload_too_large", f"the prompt is over {settings.max_prompt_chars} "
                   "characters (AITASKS_MAX_PROMPT_CHARS)", "prompt")  # fmt: skip
            continue
        named = request.conversation_id
        if named is not None:
            if named not in turns:
                refuse("not_found", f"conversation {named!r} not found", "conversation_id")
                continue
            wanted[named] = wanted.get(named, 0) + 1
            if turns[named] + wanted[named] > settings.max_turns:
                limit = f"{settings.max_turns} turns (AITASKS_MAX_TURNS)"
                refuse("limit_exceeded", f"the conversation would pass its limit of {limit}",
                       "conversation_id")  # fmt: skip
                continue
        lines.append(
            store.NewLine(index, spec, request.prompt, request.custom_id,
                          request.conversation_id, request.params, request.context)
        )  # fmt: skip
    return lines, errors


async def _check_quota(services: Services, caller: Caller, lines: Sequence[store.NewLine]) -> None:
    """Refuse a batch whose chat lines' estimate is past what the key has left today."""
    key = caller.key
    if key is None or key.daily_tokens is None:
        return
    estimate = sum(
        chat_estimate(line.prompt, line.context, line.params)
        for line in lines
        if line.spec.kind is ModelKind.CHAT
    )
    used = await services.limits.tokens_used(key.id)
    if used + estimate > key.daily_tokens:
        raise RateLimited(
            f"daily token quota: this batch needs about {estimate} tokens and the key has "
            f"{max(0, key.daily_tokens - used)} of its {key.daily_tokens} left today (UTC)",
            retry_after=3600,
            limit="daily_tokens",
        )


async def create_batch(
    services: Services,
    caller: Caller,
    requests: Sequence[BatchRequest],
    errors: Sequence[LineError] = (),
    *,
    surface: str,
    endpoint: str,
    input_file_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    completion_window: str = "24h",
) -> Batch:
    """Accept a batch whole, or record it `failed` with every bad line (`errors`: those the
    surface found; the rest are checked here) and queue nothing."""
    batch_id = new_id()
    key = caller.key
    row: dict[str, Any] = {
        "id": batch_id, "tenant": caller.tenant, "api_key_id": key.id if key else None,
        "surface": surface, "endpoint": endpoint, "input_file_id": input_file_id,
        "completion_window": completion_window, "metadata": metadata,
        "total": len(requests) + len(errors),
    }  # fmt: skip
    found = list(errors)
    most = services.settings.max_batch_requests
    if row["total"] > most:
        found.append(LineError(most + 1, "too_many_requests", f"a batch may hold {most} requests "
                               "(AITASKS_MAX_BATCH_REQUESTS)"))  # fmt: skip
    elif row["total"] == 0:
        found.append(LineError(1, "empty_batch", "the batch has no requests"))
    named = [r.conversation_id for r in requests if r.conversation_id is not None]
    async with services.db.session() as session:
        turns = await store.conversation_turns(session, named, tenant=caller.tenant)
    lines, bad = _check(services, requests, turns)
    found += bad
    if found:
        found.sort(key=lambda e: e.line)
        row["errors"] = [e.as_dict() for e in found[:MAX_ERRORS]]
        async with services.db.session() as session:
            return await store.insert_failed(session, row)
    await _check_quota(services, caller, lines)
    placement = Placement(Lane.BATCH, caller.tenant, key.weight if key else 1)
    now = utcnow()
    expires_at = now + COMPLETION_WINDOWS[completion_window]
    row |= {"status": "in_progress", "in_progress_at": now, "expires_at": expires_at}
    async with services.db.session() as session:
        written = await store.insert_batch(
            session, row, lines, owner=Owner(caller.tenant, row["api_key_id"]),
            placement=placement, expires_at=expires_at,
            # Each task's runs: a trace of its own, linked to this request's.
            trace_context=telemetry.as_link(telemetry.traceparent()),
        )  # fmt: skip
    await _publish(services, written, placement)
    for line in lines:
        label = services.models.label_of(line.spec.name)
        metrics.TASKS_SUBMITTED.labels(label, line.spec.queue).inc()
    async with services.db.session() as session:
        return await store.get_batch(session, batch_id, tenant=caller.tenant)


async def _publish(
    services: Services, written: Sequence[tuple[str, str]], placement: Placement
) -> None:
    """Hand the batch's tasks to their queues, a queue's at a time, in line order. If Redis is
    down they are stored all the same, and the reconciler publishes them once it is back."""
    by_queue: dict[str, list[tuple[str, str | None]]] = {}
    for task_id, queue in written:
        by_queue.setdefault(queue, []).append((task_id, None))
    try:
        for queue, tasks in by_queue.items():
            await services.queue.publish_many(queue, tasks, placement)
    except RedisUnavailable as exc:
        log.warning("batch stored but not published (the reconciler will): %s", exc.message)


async def progress(services: Services, batch: Batch) -> Progress:
    """The batch's tasks by status: counted now while it runs, as kept once it has ended."""
    if batch.status not in GOING and batch.status != "finalizing":
        counts = {TaskStatus.SUCCESS.value: batch.completed, TaskStatus.FAILED.value: batch.failed}
        return Progress(batch.total, counts)
    async with services.db.read_connection() as connection:
        return Progress(batch.total, await store.counts(connection, batch.id))


async def cancel_batch(services: Services, caller: Caller, batch_id: str) -> Batch:
    """Cancel a batch still running: its unfinished tasks are cancelled (those running stop),
    and it is `cancelling` until the reconciler ends it as `cancelled`. A batch already ended
    is left as it is."""
    async with services.db.session() as session:
        batch = await store.get_batch(session, batch_id, tenant=caller.tenant)
    if batch.status != "in_progress":
        return batch
    async with services.db.session() as session:
        moved = await store.move(
            session, batch.id, ["in_progress"], status="cancelling", cancelling_at=utcnow()
        )
    if not moved:  # ended meanwhile
        async with services.db.session() as session:
            return await store.get_batch(session, batch_id, tenant=caller.tenant)
    async with services.db.session() as session:
        running = await store.cancel_tasks(session, batch.id)
    for task_id in running:
        try:
            await stop_task(services, task_id, TaskStatus.CANCELLED)
        except RedisUnavailable:
            break  # their workers notice at their next lease renewal
    async with services.db.session() as session:
        return await store.get_batch(session, batch_id, tenant=caller.tenant)


async def finish_batches(services: Services) -> int:
    """End every batch none of whose tasks is unfinished (see the module's docstring); how many
    ended. The move from running to ended is conditional, so two processes cannot both."""
    async with services.db.session() as session:
        going = await store.still_going(session)
    ended = 0
    for batch in going:
        async with services.db.session() as session:
            if await store.unfinished(session, batch.id):
                continue
            counts = await store.counts(session, batch.id)
        done = Progress(batch.total, counts)
        status = (
            "cancelled"
            if batch.status == "cancelling"
            else "expired"
            if counts.get(TaskStatus.EXPIRED, 0)
            else "completed"
        )
        now = utcnow()
        values: dict[str, Any] = {
            "status": status, "completed": done.succeeded, "failed": done.failed,
            "finalizing_at": now, f"{status}_at": now,
        }  # fmt: skip
        if batch.surface == "openai":
            values |= await _result_files(services, batch, done)
        async with services.db.session() as session:
            if await store.move(session, batch.id, GOING, **values):
                ended += 1
                log.info("batch %s %s: %d of %d answered", batch.id, status, done.succeeded,
                         batch.total)  # fmt: skip
    return ended


async def _result_files(services: Services, batch: Batch, done: Progress) -> dict[str, Any]:
    """Record the batch's output file (the lines answered) and error file (the others), each
    only when it has a line; their sizes are counted by making them once."""
    files: dict[str, Any] = {}
    for which, has in (("output", done.succeeded), ("error", done.failed)):
        if not has:
            continue
        file_id = new_id()
        size = await result_size(services, batch, which)
        async with services.db.session() as session:
            await store.add_file(
                session, file_id=file_id, tenant=batch.tenant, purpose=f"batch_{which}",
                size=size, name=f"batch_{batch.id}_{which}.jsonl", key=file_key(file_id),
            )  # fmt: skip
        files[f"{which}_file_id"] = file_id
    return files
