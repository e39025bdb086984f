"""POST /v1/chat/completions and /v1/images/generations: accept a task and answer at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from aitasks.api.call import Call, CallDep
from aitasks.api.deps import PreferHeader
from aitasks.api.live import preferred_wait, task_events, wait_for_task
from aitasks.api.responses import errors
from aitasks.api.schemas import ChatSubmitRequest, SubmitRequest, SubmitResponse
from aitasks.api.tool_shapes import response_format_of, tool_choice_of, tools_of
from aitasks.auth.caller import Caller
from aitasks.lifecycle.chat_input import ChatTurn, pending_image
from aitasks.lifecycle.submit import submit_task
from aitasks.links import Links
from aitasks.routing import ModelKind
from aitasks.services import Services
from aitasks.store.models import TERMINAL_STATUSES, TaskStatus
from aitasks.views import TaskView, task_view

router = APIRouter(prefix="/v1", tags=["tasks"])

# Served by `api.submit_route`'s routes when well-formed, which stand ahead of these; these
# document them in the OpenAPI schema and answer what those hand on.
CHAT_PATH = "/chat/completions"
IMAGE_PATH = "/images/generations"

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


async def submit(
    services: Services,
    caller: Caller,
    body: SubmitRequest,
    kind: ModelKind,
    links: Links,
    idempotency_key: str | None,
    prefer: str | None,
    turn: ChatTurn | None = None,
) -> Response:
    """The seed's submit: 202 with the task's id; or, when asked, its stream or its result."""
    wait = preferred_wait(prefer, services.settings.max_wait_seconds)
    task, created = await submit_task(
        services,
        caller,
        kind,
        model=body.model,
        prompt=turn.prompt(body.prompt or "") if turn is not None else body.prompt,
        turn=turn,
        conversation_id=body.conversation_id,
        idempotency_key=idempotency_key,
        # Only a keyed submit is ever compared with another: spare the hot path the dump.
        request=body.model_dump() if idempotency_key else None,
        callback_url=body.callback_url,
        callback_events=body.callback_events,
        priority=body.priority,
        # Someone waits on the answer: the interactive lane, unless another is asked for.
        interactive=body.stream or wait is not None,
        expires_after=body.expires_after,
        run_timeout=body.timeout,
    )
    if body.stream:
        return StreamingResponse(
            task_events(services, task.id, links, None, tenant=caller.tenant),
            media_type="text/event-stream",
        )
    if wait is not None:
        task = await wait_for_task(services, task.id, wait, tenant=caller.tenant)
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
    CHAT_PATH,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmitResponse | TaskView,
    responses=SUBMIT_RESPONSES,
)
async def create_chat(
    body: ChatSubmitRequest,
    call: CallDep,
    idempotency_key: IdempotencyKey = None,
    prefer: PreferHeader = None,
) -> Response:
    """Submit a chat turn; poll `GET /v1/tasks/{task_id}` for the reply.

    With `Prefer: wait=N` the answer is the task itself once it finishes (200), or as it is after N
    seconds (202). With `"stream": true` it is the task's event stream.

    `tools` (and `tool_choice`) let the model call functions: the task's `tool_calls` then name
    them, and the next submit to the conversation carries their `tool_results` instead of a
    prompt. `response_format` asks for JSON; `images` sends pictures (file ids or data: URLs).
    """
    return await submit_chat(call, body, idempotency_key, prefer)


@router.post(
    IMAGE_PATH,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmitResponse | TaskView,
    responses=SUBMIT_RESPONSES,
)
async def create_image(
    body: Annotated[SubmitRequest, Body(openapi_examples=IMAGE_EXAMPLE)],
    call: CallDep,
    idempotency_key: IdempotencyKey = None,
    prefer: PreferHeader = None,
) -> Response:
    """Submit an image generation; the task's result is the images' URLs.

    `Prefer: wait=N` and `"stream": true` work as for chat.
    """
    return await submit_image(call, body, idempotency_key, prefer)


async def submit_chat(
    call: Call, body: ChatSubmitRequest, idempotency_key: str | None, prefer: str | None
) -> Response:
    """What `create_chat` answers; `api.submit_route`'s route answers the same through it."""
    services = call.services
    turn = ChatTurn(
        tools=tools_of(body.tools),
        tool_choice=tool_choice_of(body.tool_choice),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=response_format_of(body.response_format),
        images=[
            pending_image(ref, services.settings, f"images[{index}]")
            for index, ref in enumerate(body.images or ())
        ],
        tool_results=[r.model_dump() for r in body.tool_results] if body.tool_results else None,
    )
    return await submit(
        services, call.caller, body, ModelKind.CHAT, call.links, idempotency_key, prefer, turn
    )


async def submit_image(
    call: Call, body: SubmitRequest, idempotency_key: str | None, prefer: str | None
) -> Response:
    """What `create_image` answers; `api.submit_route`'s route answers the same through it."""
    return await submit(
        call.services, call.caller, body, ModelKind.IMAGE, call.links, idempotency_key, prefer
    )
