"""Chat completions, image generations and models, the way OpenAI's API answers them.

Each request becomes a task on the same queues and workers as the seed's API; the route then waits
for it (or streams its event log) and answers in OpenAI's shapes. Every exchange is kept in a
conversation; `conversation_id` (the SDK's `extra_body`) continues one, and each response names its
conversation so a client can.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response, StreamingResponse

from aitasks.api.auth import CallerDep, authenticate
from aitasks.api.call import Call
from aitasks.api.deps import LinksDep, ServicesDep
from aitasks.api.live import wait_for_task
from aitasks.api.openai.error_shape import openai_error
from aitasks.api.openai.tools import chat_turn, completion_message, tool_call_deltas
from aitasks.api.openai.wire import ChatCompletionRequest, ImageRequest
from aitasks.api.routes.submit import IdempotencyKey
from aitasks.auth.caller import Caller
from aitasks.config import Settings
from aitasks.errors import (
    InvalidRequest,
    LimitExceeded,
    PayloadTooLarge,
    ServiceUnavailable,
    TaskNotFound,
)
from aitasks.events import DONE
from aitasks.events.base import DELTA, REASONING, STATUS, TOOL_CALL
from aitasks.lifecycle import read_task, submit_task
from aitasks.priority import SERVICE_TIERS
from aitasks.routing import ModelKind, ModelSpec
from aitasks.services import Services
from aitasks.store import file_records
from aitasks.store.models import TERMINAL_STATUSES, Task, TaskStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])

# How long a synchronous request waits for its task before answering 504 (the task goes on).
SYNC_WAIT_SECONDS = 600.0
# HTTP status for a task that failed, by its error type; anything else is a 502 (bad gateway).
FAILURE_STATUS = {
    "provider_bad_request": 400,
    "provider_rate_limited": 429,
    "provider_timeout": 504,
    # Not started before its deadline (`expires_after`), or run past its `timeout`.
    "expired": 408,
    "timeout": 504,
}
PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed", "user")


def refuse_oversized(body: ChatCompletionRequest, settings: Settings) -> None:
    count, most = len(body.messages), settings.max_messages
    if count > most:
        raise PayloadTooLarge(
            f"messages has {count} entries; the limit is {most} (AITASKS_MAX_MESSAGES)",
            param="messages",
            limit=most,
        )
    chars, most = sum(len(m.text()) for m in body.messages), settings.max_history_chars
    if chars > most:
        raise PayloadTooLarge(
            f"the messages hold {chars} characters; the limit is {most} "
            "(AITASKS_MAX_HISTORY_CHARS)",
            param="messages",
            limit=most,
        )


def _refuse_oversized_images(body: ImageRequest, settings: Settings) -> None:
    if body.n > settings.max_images:
        raise LimitExceeded(
            f"n is {body.n}; the limit is {settings.max_images} images (AITASKS_MAX_IMAGES)",
            param="n",
            limit=settings.max_images,
        )
    if body.size:
        side = max(int(part) for part in body.size.split("x"))
        if side > settings.max_image_side:
            raise LimitExceeded(
                f"size {body.size} is over the limit of {settings.max_image_side} pixels a side "
                "(AITASKS_MAX_IMAGE_SIDE)",
                param="size",
                limit=settings.max_image_side,
            )


def _refuse_unsupported(body: ChatCompletionRequest) -> None:
    if body.n is not None and body.n > 1:
        raise InvalidRequest("n > 1 is not supported: ask once per choice", param="n")


def lane_of(service_tier: str | None, expires_after: float | None) -> dict[str, Any]:
    """The lane and deadline of a request here: its `service_tier`'s lane, else interactive
    (someone waits on the answer)."""
    return {
        "priority": SERVICE_TIERS[service_tier] if service_tier else None,
        "interactive": True,
        "expires_after": expires_after,
    }


def _failure(task: Task) -> Response:
    """How a task that did not succeed is answered. The SDK is told not to retry: the task was
    already tried (with its own retries), and a retry would submit it, and run it, again."""
    no_retry = {"x_should_retry": "false"}
    if task.status == TaskStatus.CANCELLED:
        return openai_error(409, f"task {task.id} was cancelled", code="cancelled", **no_retry)
    if task.status not in TERMINAL_STATUSES:
        message = f"task {task.id} did not finish in time; it goes on"
        return openai_error(504, message, code="timeout", **no_retry)
    error = task.error or {}
    error_type = str(error.get("type", "provider_error"))
    status = FAILURE_STATUS.get(error_type, 502)
    message = str(error.get("message", "failed"))
    return openai_error(status, message, code=error_type, **no_retry)


def _completion(task: Task) -> dict[str, Any]:
    message, finish_reason = completion_message(task)
    return {
        "id": f"chatcmpl-{task.id}",
        "object": "chat.completion",
        "created": int(task.created_at.timestamp()),
        "model": task.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": task.usage,
        "system_fingerprint": None,
        "conversation_id": task.conversation_id,
    }


# Served by `factory.serve_chat_first`'s plain route when well-formed, which stands ahead of this
# one; this one documents it in the OpenAPI schema and answers what that one hands on.
CHAT_PATH = "/chat/completions"


@router.post(CHAT_PATH)
async def chat_completions(
    body: ChatCompletionRequest,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await complete_chat(services, caller, body, idempotency_key)


async def answer_chat(
    call: Call, body: ChatCompletionRequest, idempotency_key: str | None
) -> Response:
    """What the plain route (`api/submit_route.py`) answers: `chat_completions`' answer."""
    return await complete_chat(call.services, call.caller, body, idempotency_key)


async def complete_chat(
    services: Services, caller: Caller, body: ChatCompletionRequest, idempotency_key: str | None
) -> Response:
    """A chat completion: the task's reply once it finishes, or its stream (`stream: true`)."""
    _refuse_unsupported(body)
    refuse_oversized(body, services.settings)
    prompt, turn = chat_turn(body, services.settings)
    if body.conversation_id:
        turn.context = None  # the conversation's history is the context
    params = {name: getattr(body, name) for name in PARAMS if getattr(body, name) is not None}
    if body.max_completion_tokens is not None:
        params["max_tokens"] = body.max_completion_tokens
    task, _ = await submit_task(
        services,
        caller,
        ModelKind.CHAT,
        model=body.model,
        prompt=prompt,
        conversation_id=body.conversation_id,
        params=params,
        # In a conversation, its history is the context; otherwise the messages sent are.
        turn=turn,
        prompt_param="messages",
        # A repeat (the SDK's retry of a call that timed out) gets the first request's task.
        idempotency_key=idempotency_key,
        request=body.model_dump() if idempotency_key else None,
        **lane_of(body.service_tier, body.expires_after),
    )
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _chunks(services, caller, task, include_usage), media_type="text/event-stream"
        )
    task = await wait_for_task(services, task.id, SYNC_WAIT_SECONDS, tenant=caller.tenant)
    if task.status != TaskStatus.SUCCESS:
        return _failure(task)
    return JSONResponse(_completion(task))


def _chunk(task: Task, created: int, **fields: Any) -> str:
    chunk = {
        "id": f"chatcmpl-{task.id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": task.model,
        "system_fingerprint": None,
        **fields,
    }
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


def _stream_error(message: str, code: str) -> str:
    error = {"message": message, "type": "server_error", "param": None, "code": code}
    return f"data: {json.dumps({'error': error})}\n\n"


async def _chunks(
    services: Services, caller: Caller, task: Task, include_usage: bool
) -> AsyncIterator[str]:
    """The task's deltas as `chat.completion.chunk` events, ending in `data: [DONE]`.

    Text once sent cannot be taken back: when the task starts a new attempt after some of an
    earlier attempt's text went out, the stream ends with a `stream_interrupted` error instead of
    mixing the two (the task goes on, and its result is at /v1/tasks/{id}); when none had gone
    out, the new attempt simply streams. An event log or database that cannot be reached ends it
    with an error too, never with a cut body.
    """
    created = int(task.created_at.timestamp())
    yield _chunk(task, created, choices=[_choice({"role": "assistant", "content": ""})])
    after: str | None = None
    attempt: int | None = None
    sent = False
    calls = 0
    heartbeat = services.settings.sse_heartbeat_seconds
    try:
        while True:
            events = await services.events.read(task.id, after=after, wait_seconds=heartbeat)
            if not events:
                now = await read_task(services, task.id, tenant=caller.tenant)
                if now.status in TERMINAL_STATUSES:
                    break  # its `done` was lost: finish from the database
                yield ": keep-alive\n\n"
                continue
            after = events[-1].id
            for event in events:
                if event.type == STATUS and "attempt" in event.data:
                    if sent and event.data["attempt"] != attempt:
                        yield _stream_error(
                            f"the reply was interrupted and is being tried again; the task "
                            f"goes on, its result will be at /v1/tasks/{task.id}",
                            "stream_interrupted",
                        )
                        return
                    attempt = event.data["attempt"]
                elif event.type == DELTA:
                    sent = True
                    delta = _choice({"content": event.data["delta"]})
                    yield _chunk(task, created, choices=[delta])
                elif event.type == REASONING:
                    sent = True
                    delta = _choice({"reasoning_content": event.data["delta"]})
                    yield _chunk(task, created, choices=[delta])
                elif event.type == TOOL_CALL:
                    sent = True
                    for piece in tool_call_deltas(calls, event.data):
                        yield _chunk(task, created, choices=[_choice(piece)])
                    calls += 1
            if any(event.type == DONE for event in events):
                break
        final = await read_task(services, task.id, tenant=caller.tenant)
    except TaskNotFound:
        yield _stream_error("the task was deleted with its conversation", "not_found")
        return
    except ServiceUnavailable as exc:
        # Redis (the event log) or the database is down: end in an error the SDK raises as an
        # `APIError`, never a cut body. The task goes on.
        log.info("task %s: chat stream cut short: %s", task.id, exc)
        yield _stream_error(
            f"the stream broke off ({exc.message}); the task goes on, its result will be at "
            f"/v1/tasks/{task.id}",
            exc.error_type,
        )
        return
    except Exception:
        log.exception("task %s: chat stream failed", task.id)
        yield _stream_error(
            f"the stream broke off on an unexpected error; the task goes on, its result will be "
            f"at /v1/tasks/{task.id}",
            "internal_error",
        )
        return
    if final.status != TaskStatus.SUCCESS:
        failure = json.loads(bytes(_failure(final).body))
        yield f"data: {json.dumps(failure)}\n\n"
        return
    finish_reason = completion_message(final)[1]
    yield _chunk(task, created, choices=[_choice({}, finish_reason=finish_reason)])
    if include_usage:
        yield _chunk(task, created, choices=[], usage=final.usage)
    yield "data: [DONE]\n\n"


def _choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}


@router.post("/images/generations")
async def images_generations(
    body: ImageRequest,
    services: ServicesDep,
    caller: CallerDep,
    links: LinksDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    _refuse_oversized_images(body, services.settings)
    params: dict[str, object] = {"n": body.n}
    if body.size:
        params["size"] = body.size
    task, _ = await submit_task(
        services,
        caller,
        ModelKind.IMAGE,
        model=body.model,
        prompt=body.prompt,
        conversation_id=body.conversation_id,
        params=params,
        idempotency_key=idempotency_key,
        request=body.model_dump() if idempotency_key else None,
        **lane_of(body.service_tier, body.expires_after),
    )
    task = await wait_for_task(services, task.id, SYNC_WAIT_SECONDS, tenant=caller.tenant)
    if task.status != TaskStatus.SUCCESS:
        return _failure(task)
    file_ids: list[str] = (task.result or {}).get("files", [])
    data: list[dict[str, Any]] = []
    if body.response_format == "url":
        data = [{"url": links.file(f), "revised_prompt": None} for f in file_ids]
    else:
        async with services.db.session() as session:
            stored = [
                await file_records.get_file(session, f, tenant=caller.tenant) for f in file_ids
            ]
        for record in stored:
            assert record is not None, "a finished task's files are recorded with it"
            png = await services.storage.get(record.storage_key)
            data.append({"b64_json": base64.b64encode(png).decode(), "revised_prompt": None})
    return JSONResponse({"created": int(time.time()), "data": data})


def _model(spec: ModelSpec) -> dict[str, Any]:
    return {"id": spec.name, "object": "model", "created": 0, "owned_by": spec.provider,
            "supports": list(spec.features)}  # fmt: skip


@router.get("/models")
async def list_models(services: ServicesDep) -> dict[str, Any]:
    models = sorted(services.models.models.values(), key=lambda m: m.name)
    return {"object": "list", "data": [_model(m) for m in models]}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, services: ServicesDep) -> dict[str, Any]:
    return _model(services.models.resolve(model_id))
