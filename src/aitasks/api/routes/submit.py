"""POST /v1/chat/completions and /v1/images/generations: accept a task and answer at once."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from aitasks.api.deps import ServicesDep
from aitasks.api.schemas import SubmitRequest, SubmitResponse
from aitasks.errors import PayloadTooLarge, QueueFull
from aitasks.queue import QueueUnavailable
from aitasks.routing import ModelKind
from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.models import TaskStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["tasks"])

# How long a client told "queue full" should wait before trying again, in seconds.
QUEUE_FULL_RETRY_AFTER = 5

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
    except QueueUnavailable:
        return  # the task is still stored, and runs once the queue is back
    if depth >= limit:
        raise QueueFull(
            f"queue {queue!r} holds {depth} tasks, its limit is {limit}; retry later",
            retry_after=QUEUE_FULL_RETRY_AFTER,
            limit=limit,
        )


async def submit(
    services: Services,
    body: SubmitRequest,
    kind: ModelKind,
    response: Response,
    idempotency_key: str | None,
) -> SubmitResponse:
    """Validate, route, commit the task, then publish it: an answered task is always stored."""
    limit = services.settings.max_prompt_chars
    if len(body.prompt) > limit:
        raise PayloadTooLarge(
            f"prompt is {len(body.prompt)} characters; the limit is {limit}",
            param="prompt",
            limit=limit,
        )
    spec = services.models.resolve_kind(body.model, kind)
    await _refuse_when_full(services, spec.queue)
    async with services.db.session() as session:
        submission = await store.submit_task(
            session,
            spec=spec,
            prompt=body.prompt,
            conversation_id=body.conversation_id,
            idempotency_key=idempotency_key,
            request_hash=request_hash(kind, body),
        )
    task = submission.task
    if not submission.created:
        response.status_code = status.HTTP_200_OK
        return SubmitResponse(
            task_id=task.id, conversation_id=task.conversation_id, status=TaskStatus(task.status)
        )
    try:
        await services.queue.publish(task.queue, task.id)
    except QueueUnavailable as exc:
        # The task is committed; the workers' reconciler publishes it once the queue is back.
        log.warning("task %s stored but not published: %s", task.id, exc.message)
    return SubmitResponse(
        task_id=task.id, conversation_id=task.conversation_id, status=TaskStatus.PENDING
    )


@router.post(
    "/chat/completions", status_code=status.HTTP_202_ACCEPTED, response_model=SubmitResponse
)
async def create_chat(
    body: SubmitRequest,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SubmitResponse:
    """Submit a chat turn; poll `GET /v1/tasks/{task_id}` for the reply."""
    return await submit(services, body, ModelKind.CHAT, response, idempotency_key)


@router.post(
    "/images/generations", status_code=status.HTTP_202_ACCEPTED, response_model=SubmitResponse
)
async def create_image(
    body: SubmitRequest,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SubmitResponse:
    """Submit an image generation; the task's result is the images' URLs."""
    return await submit(services, body, ModelKind.IMAGE, response, idempotency_key)
