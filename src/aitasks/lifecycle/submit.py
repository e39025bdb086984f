"""Submit: a request becomes a stored task on its queue, or is refused leaving nothing behind.

The steps, in order: the request's own checks (callback, prompt size, model), an idempotent
repeat's earlier task, backpressure, admission against the caller's key, the commit, and only
then the publish. Every surface that takes work (the seed's API, the OpenAI-compatible one) and,
later, batches come through here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aitasks import metrics, telemetry
from aitasks.auth.caller import Caller
from aitasks.config import Settings
from aitasks.errors import InvalidRequest, PayloadTooLarge, RedisUnavailable
from aitasks.lifecycle import placement
from aitasks.lifecycle.admission import admit, confirm, unadmit
from aitasks.lifecycle.backpressure import refuse_when_full
from aitasks.lifecycle.chat_input import ChatTurn
from aitasks.lifecycle.publish_group import Announcement, announce
from aitasks.limits.tokens import chat_estimate
from aitasks.priority import Lane
from aitasks.routing import ModelKind
from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.models import Task, new_id, utcnow
from aitasks.store.tasks import Callback, Owner
from aitasks.webhooks.targets import check_url

log = logging.getLogger(__name__)


def _holds_lone_surrogate(value: object) -> bool:
    """Whether `value` (text, or lists and mappings of it) holds a lone surrogate: JSON's
    `"\\ud800"` parses to one, and no store can keep it as text (it is half of a UTF-16 pair,
    not a character)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, Mapping):
        return any(_holds_lone_surrogate(k) or _holds_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_lone_surrogate(item) for item in value)
    return False


def refuse_lone_surrogates(fields: Iterable[tuple[str, object]]) -> None:
    """A 400 naming the first field (name, value) that holds a lone surrogate, before anything
    is written (the message does not echo the value: it could not be encoded either)."""
    for name, value in fields:
        if _holds_lone_surrogate(value):
            raise InvalidRequest(
                f"{name} holds a lone surrogate (U+D800 to U+DFFF, half of a UTF-16 pair), "
                "which is not valid Unicode text",
                param=name,
            )


def request_hash(kind: ModelKind, request: Mapping[str, Any]) -> str:
    """What an idempotent repeat must match: the kind and the request as the client sent it."""
    canonical = json.dumps([kind.value, request], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def callback_of(
    url: str | None, events: Sequence[str] | None, settings: Settings
) -> Callback | None:
    """Where the task's webhooks go, if anywhere: a URL the webhook policy allows, and the events
    asked for beyond the terminal ones."""
    if url is None:
        if events:
            raise InvalidRequest("callback_events needs a callback_url", param="callback_events")
        return None
    checked = check_url(url, allow_private=settings.webhook_allow_private)
    return Callback(url=checked, events=sorted(set(events or ())))


@telemetry.traced("aitasks.submit")
async def submit_task(
    services: Services,
    caller: Caller,
    kind: ModelKind,
    *,
    model: str,
    prompt: str,
    conversation_id: str | None,
    idempotency_key: str | None = None,
    request: Mapping[str, Any] | None = None,
    params: dict[str, object] | None = None,
    context: list[dict[str, Any]] | None = None,
    callback_url: str | None = None,
    callback_events: Sequence[str] | None = None,
    prompt_param: str = "prompt",
    turn: ChatTurn | None = None,
    priority: Lane | None = None,
    interactive: bool = False,
    expires_after: float | None = None,
    run_timeout: float | None = None,
    response: dict[str, Any] | None = None,
) -> tuple[Task, bool]:
    """Validate, route, admit, commit the task, then publish it: an answered task is always
    stored, and a refused one leaves nothing behind.

    `request` is the request as sent, which a repeat under the same `idempotency_key` must match.
    Returns the task and whether it is new (False: an idempotent repeat of an earlier submit).
    `prompt_param` is what the surface calls the prompt, for the errors that name it. `turn` is
    a chat's structure (tools, structured output, images, tool results), checked against the
    model before anything is written; its images' bytes are stored just before the commit.
    `priority` is the lane asked for, `interactive` says someone waits on the answer (the lane
    when none is asked for), `expires_after` and `run_timeout` the task's deadline to start and
    bound on its run, in seconds (`lifecycle/placement.py`). `response` is what a Responses API
    task keeps beside (`Task.response`).
    """
    refuse_lone_surrogates(
        [
            (prompt_param, prompt),
            ("model", model),
            ("conversation_id", conversation_id),
            ("messages", context),
            *(turn.checked_fields() if turn is not None else ()),
            *(params or {}).items(),
            ("callback_url", callback_url),
            ("callback_events", callback_events),
            *(request or {}).items(),
        ]
    )
    callback = callback_of(callback_url, callback_events, services.settings)
    # Only a keyed submit is ever compared with another.
    fingerprint = request_hash(kind, request or {}) if idempotency_key else ""
    limit = services.settings.max_prompt_chars
    if len(prompt) > limit:
        raise PayloadTooLarge(
            f"prompt is {len(prompt)} characters; the limit is {limit} (AITASKS_MAX_PROMPT_CHARS)",
            param=prompt_param,
            limit=limit,
        )
    spec = services.models.resolve_kind(model, kind)
    scheduled = placement.schedule(
        caller,
        spec,
        utcnow(),
        priority=priority,
        interactive=interactive,
        expires_after=expires_after,
        timeout=run_timeout,
    )
    if turn is not None:
        await turn.check(services, caller, spec, conversation_id)
        params = {**(params or {}), **turn.params()}
    if idempotency_key is not None:
        # A repeat gets its task back even when the queue has filled up since.
        async with services.db.session() as session:
            earlier = await store.replay(
                session, idempotency_key, fingerprint, tenant=caller.tenant
            )
        if earlier is not None:
            return earlier, False
    await refuse_when_full(
        services.queue, spec.queue, scheduled.placement.lane, services.settings.max_queue_depth
    )
    key = caller.key
    task_id = new_id()
    if key is not None:
        # A chat task reserves its estimated tokens; an image task counts none.
        sent = turn.context if turn is not None and turn.context is not None else context
        tokens = chat_estimate(prompt, sent, params) if kind == ModelKind.CHAT else 0
        await admit(services, key, task_id, tokens=tokens)
    trace = telemetry.traceparent()  # the submit's: every run of the task joins its trace
    try:
        if turn is not None:
            await turn.store(services, caller.tenant)
            context = turn.stored_context() if turn.context is not None else context
        owner = Owner(caller.tenant, key.id if key else None)
        files = turn.new_files if turn is not None else ()
        turn_input = turn.turn_input() if turn is not None else None
        with telemetry.span("aitasks.store.submit"):
            if conversation_id is None and not files and store.groups_first_turns(services.db):
                # The most common submit, written by the group commit: no session of its own.
                values = store.task_values(
                    owner, spec, prompt, task_id=task_id, params=params, context=context,
                    callback=callback, trace_context=trace, turn_input=turn_input,
                    scheduling=scheduled.columns(), response=response,
                )  # fmt: skip
                submission = await store.submit_first_turn(
                    services.db, values, idempotency_key=idempotency_key, request_hash=fingerprint
                )
            else:
                async with services.db.session() as session:
                    submission = await store.submit_task(
                        session,
                        owner=owner,
                        spec=spec,
                        prompt=prompt,
                        conversation_id=conversation_id,
                        task_id=task_id,
                        idempotency_key=idempotency_key,
                        request_hash=fingerprint,
                        params=params,
                        context=context,
                        callback=callback,
                        max_turns=services.settings.max_turns,
                        trace_context=trace,
                        turn_input=turn_input,
                        files=files,
                        scheduling=scheduled.columns(),
                        response=response,
                    )
    except BaseException:
        await unadmit(services, caller, [task_id])
        if turn is not None:
            await turn.forget(services)
        raise
    task = submission.task
    if not submission.created:
        await unadmit(services, caller, [task_id])
        if turn is not None:
            await turn.forget(services)
        return task, False
    metrics.TASKS_SUBMITTED.labels(services.models.label_of(task.model), task.queue).inc()
    telemetry.current().update({"aitasks.task_id": task.id, "aitasks.queue": task.queue})
    try:
        # Its queue entry and the first event of its log, written with those of the other tasks
        # committed meanwhile; beside them, its admission confirmed (best effort, never raising).
        queued = Announcement(
            task.id, task.queue, task.trace_context, scheduled.placement, services.events
        )
        with telemetry.span(f"publish {task.queue}", kind="producer"):
            if key is None:
                await announce(services.queue, queued)
            else:
                await asyncio.gather(
                    announce(services.queue, queued), confirm(services, key, task_id, task.id)
                )
    except RedisUnavailable as exc:
        # The task is committed; the workers' reconciler publishes it once the queue is back.
        log.warning("task %s stored but not published: %s", task.id, exc.message)
    return task, True
