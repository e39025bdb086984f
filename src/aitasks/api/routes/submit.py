"""POST /v1/chat/completions and /v1/images/generations: accept a task and answer at once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from aitasks import metrics
from aitasks.api.admission import admit, unadmit
from aitasks.api.auth import CallerDep
from aitasks.api.deps import LinksDep, PreferHeader, ServicesDep
from aitasks.api.live import preferred_wait, task_events, wait_for_task
from aitasks.api.responses import errors
from aitasks.api.schemas import SubmitRequest, SubmitResponse
from aitasks.auth.caller import Caller
from aitasks.errors import InvalidRequest, PayloadTooLarge, QueueFull, RedisUnavailable
from aitasks.events.base import STATUS
from aitasks.links import Links
from aitasks.routing import ModelKind
from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.models import TERMINAL_STATUSES, Task, TaskStatus, new_id
from aitasks.store.tasks import Callback, Owner
from aitasks.views import TaskView, task_view
from aitasks.webhooks.targets import check_url

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["tasks"])

# How long a client told "queue full" should wait before trying again, in seconds.
QUEUE_FULL_RETRY_AFTER = 5

# 202 the new task (or with `Prefer: wait`, the task as it is then); 200 the task of an idempotent
# repeat, or with `Prefer: wait` a finished task.
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": SubmitResponse | TaskView,
        "description": "An idempotent repeat's task; or, with `Prefer: wait`, the finished task.",
    },
    **errors(400, 404, 413),
}
IMAGE_EXAMPLE = {
    "image": {
        "summary": "An image",
        "value": {"prompt": "a lighthouse at dawn", "model": "stable-diffusion-3"},
    }
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeating a request with the same key returns the first one's task (200).",
    ),
]


def request_hash(kind: ModelKind, body: SubmitRequest) -> str:
    canonical = json.dumps([kind.value, body.model_dump()], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _refuse_when_full(services: Services, queue: str) -> None:
    """Backpressure: a queue past its depth limit takes no more until workers catch up."""
    limit = services.settings.max_queue_depth
    try:
        depth = await services.queue.depth(queue)
    except RedisUnavailable:
        return  # the task is still stored, and runs once the queue is back
    if depth >= limit:
        raise QueueFull(
            f"queue {queue!r} holds {depth} tasks, its limit is {limit}; retry later",
            retry_after=QUEUE_FULL_RETRY_AFTER,
            limit=limit,
        )


async def submit_task(
    services: Services,
    caller: Caller,
    kind: ModelKind,
    *,
    model: str,
    prompt: str,
    conversation_id: str | None,
    idempotency_key: str | None = None,
    request_hash: str = "",
    params: dict[str, object] | None = None,
    context: list[dict[str, str]] | None = None,
    callback: Callback | None = None,
) -> tuple[Task, bool]:
    """Validate, route, admit, commit the task, then publish it: an answered task is always
    stored, and a refused one leaves nothing behind.

    Returns the task and whether it is new (False: an idempotent repeat of an earlier submit).
    Shared by the seed's API and the OpenAI-compatible one.
    """
    limit = services.settings.max_prompt_chars
    if len(prompt) > limit:
        raise PayloadTooLarge(
            f"prompt is {len(prompt)} characters; the limit is {limit} (AITASKS_MAX_PROMPT_CHARS)",
            param="prompt",
            limit=limit,
        )
    spec = services.models.resolve_kind(model, kind)
    if idempotency_key is not None:
        # A repeat gets its task back even when the queue has filled up since.
        async with services.db.session() as session:
            earlier = await store.replay(session, caller.tenant, idempotency_key, request_hash)
        if earlier is not None:
            return earlier, False
    await _refuse_when_full(services, spec.queue)
    key = caller.key
    task_id = new_id()
    if key is not None:
        await admit(services, key, task_id)
    try:
        async with services.db.session() as session:
            submission = await store.submit_task(
                session,
                owner=Owner(caller.tenant, key.id if key else None),
                spec=spec,
                prompt=prompt,
                conversation_id=conversation_id,
                task_id=task_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                params=params,
                context=context,
                callback=callback,
                max_turns=services.settings.max_turns,
            )
    except BaseException:
        await unadmit(services, caller, [task_id])
        raise
    task = submission.task
    if not submission.created:
        await unadmit(services, caller, [task_id])
        return task, False
    metrics.TASKS_SUBMITTED.labels(task.model, task.queue).inc()
    try:
        # Two round trips made at once: the first event of its log, and its queue entry.
        await asyncio.gather(
            services.events.append(task.id, STATUS, {"status": TaskStatus.PENDING}),
            services.queue.publish(task.queue, task.id),
        )
    except RedisUnavailable as exc:
        # The task is committed; the workers' reconciler publishes it once the queue is back.
        log.warning("task %s stored but not published: %s", task.id, exc.message)
    return task, True


def callback_of(body: SubmitRequest, services: Services) -> Callback | None:
    if body.callback_url is None:
        if body.callback_events:
            raise InvalidRequest("callback_events needs a callback_url", param="callback_events")
        return None
    url = check_url(body.callback_url, allow_private=services.settings.webhook_allow_private)
    return Callback(url=url, events=sorted(set(body.callback_events or ())))


async def submit(
    services: Services,
    caller: Caller,
    body: SubmitRequest,
    kind: ModelKind,
    links: Links,
    idempotency_key: str | None,
    prefer: str | None,
) -> Response:
    """The seed's submit: 202 with the task's id; or, when asked, its stream or its result."""
    task, created = await submit_task(
        services,
        caller,
        kind,
        model=body.model,
        prompt=body.prompt,
        conversation_id=body.conversation_id,
        idempotency_key=idempotency_key,
        # Only a keyed submit is ever compared with another.
        request_hash=request_hash(kind, body) if idempotency_key else "",
        callback=callback_of(body, services),
    )
    if body.stream:
        return StreamingResponse(
            task_events(services, task.id, caller.tenant, links, None),
            media_type="text/event-stream",
        )
    wait = preferred_wait(prefer, services.settings.max_wait_seconds)
    if wait is not None:
        task = await wait_for_task(services, task.id, caller.tenant, wait)
        finished = task.status in TERMINAL_STATUSES
        return JSONResponse(
            task_view(task, links).model_dump(mode="json"),
            status_code=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED,
        )
    accepted = SubmitResponse(
        task_id=task.id, conversation_id=task.conversation_id, status=TaskStatus(task.status)
    )
    return JSONResponse(
        accepted.model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
    )


@router.post(
    "/chat/completions",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmitResponse | TaskView,
    responses=SUBMIT_RESPONSES,
)
async def create_chat(
    body: SubmitRequest,
    services: ServicesDep,
    caller: CallerDep,
    links: LinksDep,
    idempotency_key: IdempotencyKey = None,
    prefer: PreferHeader = None,
) -> Response:
    """Submit a chat turn; poll `GET /v1/tasks/{task_id}` for the reply.

    With `Prefer: wait=N` the answer is the task itself once it finishes (200), or as it is after N
    seconds (202). With `"stream": true` it is the task's event stream.
    """
    return await submit(services, caller, body, ModelKind.CHAT, links, idempotency_key, prefer)


@router.post(
    "/images/generations",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmitResponse | TaskView,
    responses=SUBMIT_RESPONSES,
)
async def create_image(
    body: Annotated[SubmitRequest, Body(openapi_examples=IMAGE_EXAMPLE)],
    services: ServicesDep,
    caller: CallerDep,
    links: LinksDep,
    idempotency_key: IdempotencyKey = None,
    prefer: PreferHeader = None,
) -> Response:
    """Submit an image generation; the task's result is the images' URLs.

    `Prefer: wait=N` and `"stream": true` work as for chat.
    """
    return await submit(services, caller, body, ModelKind.IMAGE, links, idempotency_key, prefer)
