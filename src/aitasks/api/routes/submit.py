"""POST /v1/chat/completions and /v1/images/generations: accept a task and answer at once."""

from __future__ import annotations

import logging

from fastapi import APIRouter, status

from aitasks.api.deps import ServicesDep
from aitasks.api.schemas import SubmitRequest, SubmitResponse
from aitasks.errors import PayloadTooLarge
from aitasks.queue import QueueUnavailable
from aitasks.routing import ModelKind
from aitasks.store import tasks as store
from aitasks.store.models import TaskStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["tasks"])


async def submit(services: ServicesDep, body: SubmitRequest, kind: ModelKind) -> SubmitResponse:
    """Validate, route, commit the task, then publish it: an answered task is always stored."""
    limit = services.settings.max_prompt_chars
    if len(body.prompt) > limit:
        raise PayloadTooLarge(
            f"prompt is {len(body.prompt)} characters; the limit is {limit}",
            param="prompt",
            limit=limit,
        )
    spec = services.models.resolve_kind(body.model, kind)
    async with services.db.session() as session:
        task = await store.submit_task(
            session, spec=spec, prompt=body.prompt, conversation_id=body.conversation_id
        )
    try:
        await services.queue.publish(task.queue, task.id)
    except QueueUnavailable as exc:
        # The task is committed; it is published again when the queue's consumers reconcile.
        log.warning("task %s stored but not published: %s", task.id, exc.message)
    return SubmitResponse(
        task_id=task.id, conversation_id=task.conversation_id, status=TaskStatus.PENDING
    )


@router.post(
    "/chat/completions", status_code=status.HTTP_202_ACCEPTED, response_model=SubmitResponse
)
async def create_chat(body: SubmitRequest, services: ServicesDep) -> SubmitResponse:
    """Submit a chat turn; poll `GET /v1/tasks/{task_id}` for the reply."""
    return await submit(services, body, ModelKind.CHAT)


@router.post(
    "/images/generations", status_code=status.HTTP_202_ACCEPTED, response_model=SubmitResponse
)
async def create_image(body: SubmitRequest, services: ServicesDep) -> SubmitResponse:
    """Submit an image generation; the task's result is the images' URLs."""
    return await submit(services, body, ModelKind.IMAGE)
