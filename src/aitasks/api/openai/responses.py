"""OpenAI's Responses API: create (waited for, streamed, or in the background), retrieve (or
stream again from a sequence number), cancel, delete, and a response's input items.

A response is a task on the same queues and workers as every other (its id is `resp_` + the
task's; `response_view.py` shapes it). Its input goes through the chat path's own checks and
limits (`responses_wire.py` turns it into a chat request, `tools.chat_turn` into a `ChatTurn`);
what it continues (`previous_response_id`, `conversation`) comes first in its context
(`lifecycle/responses.py`). With `background: true` the answer is the response as queued, and
its webhooks (`callback_url`, the SDK's `extra_body`) are OpenAI's thin events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from aitasks.api.auth import CallerDep, authenticate
from aitasks.api.deps import LinksDep, ServicesDep
from aitasks.api.live import wait_for_task
from aitasks.api.openai.response_stream import response_sse
from aitasks.api.openai.response_view import response_id, response_object, task_id_of
from aitasks.api.openai.responses_wire import ResponseCreate, chat_request, echo
from aitasks.api.openai.routes import SYNC_WAIT_SECONDS, lane_of, refuse_oversized
from aitasks.api.openai.tools import chat_turn
from aitasks.api.routes.submit import IdempotencyKey
from aitasks.auth.caller import Caller
from aitasks.errors import Conflict, InvalidRequest
from aitasks.lifecycle import cancel_task, submit_task
from aitasks.lifecycle import responses as lifecycle
from aitasks.lifecycle.submit import refuse_lone_surrogates
from aitasks.routing import ModelKind
from aitasks.services import Services
from aitasks.store.models import TERMINAL_STATUSES, Task, TaskStatus

router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])


async def _prior(services: Services, caller: Caller, body: ResponseCreate) -> lifecycle.Prior:
    conversation = body.conversation_id()
    previous = body.previous_response_id
    if previous and conversation:
        raise InvalidRequest(
            "previous_response_id and conversation cannot both be given", param="conversation"
        )
    if previous:
        return await lifecycle.prior_of_response(services, caller, task_id_of(previous), previous)
    if conversation:
        if body.store is False:
            raise InvalidRequest(
                "a response in a conversation is one of its turns: store cannot be false",
                param="store",
            )
        return await lifecycle.prior_of_conversation(services, caller, conversation)
    return lifecycle.Prior()


@router.post("/responses")
async def create_response(
    body: ResponseCreate,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    if body.background and body.store is False:
        raise InvalidRequest("background responses must be stored: store cannot be false",
                             param="store")  # fmt: skip
    request = chat_request(body)
    refuse_oversized(request, services.settings)
    prior = await _prior(services, caller, body)
    prompt, turn = chat_turn(request, services.settings)
    own = turn.context or []
    instructions = own[:1] if body.instructions else []
    # The instructions, what it continues, then the client's earlier items (its own input).
    before = [*instructions, *lifecycle.as_context(prior.messages, prior.param)]
    turn.context = [*before, *own[len(instructions) :]]
    # Its results answer the calls of the reply it continues (the context is explicit).
    turn.results_answer_context = True
    kept = echo(body) | {"input_from": len(before)}
    refuse_lone_surrogates(kept.items())  # what only the response keeps is checked here
    task, _ = await submit_task(
        services,
        caller,
        ModelKind.CHAT,
        model=body.model,
        prompt=prompt,
        conversation_id=prior.conversation_id,
        params=_params(body),
        turn=turn,
        prompt_param="input",
        idempotency_key=idempotency_key,
        request=body.model_dump(mode="json") if idempotency_key else None,
        callback_url=body.callback_url,
        response=kept,
        **(lane_of(body.service_tier, body.expires_after) | {"interactive": not body.background}),
    )
    if body.stream:  # (in the background too: the response goes on when its reader leaves)
        return _stream(services, caller, task, None, forget=body.store is False)
    if body.background:
        return JSONResponse(response_object(task))
    task = await wait_for_task(services, task.id, SYNC_WAIT_SECONDS, tenant=caller.tenant)
    answer = JSONResponse(response_object(task))
    if body.store is False and task.status in TERMINAL_STATUSES:
        await lifecycle.delete_response(services, caller, task)
    return answer


def _params(body: ResponseCreate) -> dict[str, object]:
    params: dict[str, object] = {}
    for name, value in (("temperature", body.temperature), ("top_p", body.top_p),
                        ("max_tokens", body.max_output_tokens), ("user", body.user)):  # fmt: skip
        if value is not None:
            params[name] = value
    return params


def _stream(
    services: Services, caller: Caller, task: Task, starting_after: int | None, *, forget: bool
) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        async for chunk in response_sse(services, task, starting_after=starting_after):
            yield chunk
        if forget:  # store: false: gone once it has been streamed to its end
            ended = await _response(services, caller, response_id(task.id))
            if ended.status in TERMINAL_STATUSES:
                await lifecycle.delete_response(services, caller, ended)

    return StreamingResponse(events(), media_type="text/event-stream")


async def _response(services: Services, caller: Caller, response_id: str) -> Task:
    return await lifecycle.read_response(
        services, task_id_of(response_id), response_id, tenant=caller.tenant, param="response_id"
    )


@router.get("/responses/{response_id}")
async def retrieve_response(
    response_id: str,
    services: ServicesDep,
    caller: CallerDep,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    task = await _response(services, caller, response_id)
    if stream:
        return _stream(services, caller, task, starting_after, forget=False)
    return JSONResponse(response_object(task))


@router.post("/responses/{response_id}/cancel")
async def cancel_response(response_id: str, services: ServicesDep, caller: CallerDep) -> Response:
    """Cancel a queued or running response; cancelling a cancelled one answers it again, and
    one that finished otherwise cannot be cancelled (400)."""
    task = await _response(services, caller, response_id)
    if task.status == TaskStatus.CANCELLED:
        return JSONResponse(response_object(task))
    try:
        task = await cancel_task(services, task.id, tenant=caller.tenant)
    except Conflict:
        task = await _response(services, caller, response_id)
        if task.status == TaskStatus.CANCELLED:
            return JSONResponse(response_object(task))
        raise InvalidRequest(
            f"response {response_id!r} has already finished "
            f"({response_object(task)['status']}); only a queued or in_progress response can "
            "be cancelled",
            param="response_id",
        ) from None
    return JSONResponse(response_object(task))


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, services: ServicesDep, caller: CallerDep) -> Response:
    task = await _response(services, caller, response_id)
    await lifecycle.delete_response(services, caller, task)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


@router.get("/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    services: ServicesDep,
    caller: CallerDep,
    links: LinksDep,
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """What was sent with the response (its items, not what it continued), a page at a time."""
    task = await _response(services, caller, response_id)
    items = lifecycle.input_items(task, links.file)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"after: no input item {after!r} in this response",
                                 param="after")  # fmt: skip
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit,
    }  # fmt: skip
