"""Tasks: read one, list (dead letters included), cancel, retry, and their webhook deliveries.
Each caller sees only its tenant's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import StreamingResponse

from aitasks import lifecycle, telemetry
from aitasks.api import poll
from aitasks.api.auth import CallerDep
from aitasks.api.call import CallDep
from aitasks.api.deps import LinksDep, PreferHeader, ServicesDep, SessionDep
from aitasks.api.listing import Page
from aitasks.api.live import EVENT_ID, task_events
from aitasks.api.responses import errors
from aitasks.api.schemas import IsoDatetime, TaskList, WebhookDeliveryList
from aitasks.errors import InvalidRequest
from aitasks.store import tasks as store
from aitasks.store import webhooks as webhook_store
from aitasks.store.models import TaskStatus
from aitasks.views import TaskView, delivery_view, task_view

router = APIRouter(prefix="/v1", tags=["tasks"])

MAX_PAGE = 100


# Served by `api.poll`'s route, which stands ahead of this one; this one documents it in the
# OpenAPI schema (the Prefer header, the bearer key, the answers) and answers the same.
READ_PATH = "/tasks/{task_id}"


@router.get(READ_PATH, response_model=TaskView, responses=errors(404))
async def read_task(task_id: str, call: CallDep, prefer: PreferHeader = None) -> Response:
    """A task's status, and its result or error once it has finished.

    With `Prefer: wait=N`, the answer comes as soon as the task finishes, or after N seconds.
    """
    return await poll.answer(call, task_id, prefer)


@router.get(
    "/tasks/{task_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **errors(400, 404)},
)
async def stream_task(
    task_id: str,
    services: ServicesDep,
    caller: CallerDep,
    links: LinksDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """The task's life as Server-Sent Events: `status` on each change, `delta` for each piece of
    reply text, and a last `done` carrying the task. Reconnect with `Last-Event-ID` to resume."""
    if last_event_id is not None and not EVENT_ID.fullmatch(last_event_id):
        raise InvalidRequest(
            f"Last-Event-ID {last_event_id!r} is not an event id", param="Last-Event-ID"
        )
    # 404 before the stream starts; no connection held after.
    task = await lifecycle.read_task(services, task_id, tenant=caller.tenant)
    telemetry.current().link(task.trace_context, {"aitasks.link": "stream"})
    return StreamingResponse(
        task_events(services, task_id, links, last_event_id, tenant=caller.tenant),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/tasks", response_model=TaskList, responses=errors(400))
async def list_tasks(
    session: SessionDep,
    caller: CallerDep,
    links: LinksDep,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    model: str | None = None,
    conversation_id: str | None = None,
    created_after: IsoDatetime | None = None,
    created_before: IsoDatetime | None = None,
    after: Annotated[str | None, Query(description="`next_after` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
) -> TaskList:
    """Tasks, newest first; `?status=FAILED` lists the dead letters."""
    rows = await store.list_tasks(
        session,
        tenant=caller.tenant,
        status=status_,
        model=model,
        conversation_id=conversation_id,
        created_after=created_after,
        created_before=created_before,
        after=after,
        limit=limit + 1,
    )
    page = Page(rows, limit, key=lambda t: t.id)
    return TaskList(
        data=[task_view(t, links) for t in page.rows],
        has_more=page.has_more,
        next_after=page.next_after,
    )


@router.post("/tasks/{task_id}/cancel", response_model=TaskView, responses=errors(404, 409))
async def cancel_task(
    task_id: str, services: ServicesDep, caller: CallerDep, links: LinksDep
) -> TaskView:
    """Cancel a `PENDING` or `RUNNING` task; a finished one is a 409."""
    task = await lifecycle.cancel_task(services, task_id, tenant=caller.tenant)
    return task_view(task, links)


@router.post(
    "/tasks/{task_id}/retry",
    response_model=TaskView,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409),
)
async def retry_task(
    task_id: str, services: ServicesDep, caller: CallerDep, links: LinksDep
) -> TaskView:
    """Queue a `FAILED` or `CANCELLED` task again, with a fresh set of attempts. It counts
    against the key's tasks in flight again."""
    task = await lifecycle.retry_task(services, caller, task_id)
    # Its runs join the task's own trace (stored with it); this request links to it.
    telemetry.current().link(task.trace_context, {"aitasks.link": "retry"})
    return task_view(task, links)


@router.get("/tasks/{task_id}/webhooks", response_model=WebhookDeliveryList, responses=errors(404))
async def list_webhooks(
    task_id: str, session: SessionDep, caller: CallerDep
) -> WebhookDeliveryList:
    """The task's webhook deliveries, oldest first: event, outcome, attempts, last answer."""
    deliveries = await webhook_store.deliveries_of(session, task_id, tenant=caller.tenant)
    return WebhookDeliveryList(data=[delivery_view(d) for d in deliveries])
