"""Tasks: read one, list (dead letters included), cancel, retry."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from aitasks.api.deps import ServicesDep, SessionDep
from aitasks.api.schemas import TaskList, TaskView
from aitasks.api.views import task_view
from aitasks.queue import QueueUnavailable
from aitasks.services import Services
from aitasks.store import tasks as store
from aitasks.store.models import Task, TaskStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["tasks"])

MAX_PAGE = 100


@router.get("/tasks/{task_id}", response_model=TaskView)
async def read_task(task_id: str, session: SessionDep, request: Request) -> TaskView:
    """A task's status, and its result or error once it has finished."""
    return task_view(await store.get_task(session, task_id), request.base_url)


@router.get("/tasks", response_model=TaskList)
async def list_tasks(
    session: SessionDep,
    request: Request,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    model: str | None = None,
    conversation_id: str | None = None,
    after: Annotated[str | None, Query(description="`next_after` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
) -> TaskList:
    """Tasks, newest first; `?status=FAILED` lists the dead letters."""
    rows = await store.list_tasks(
        session,
        status=status_,
        model=model,
        conversation_id=conversation_id,
        after=after,
        limit=limit + 1,
    )
    page = rows[:limit]
    return TaskList(
        data=[task_view(t, request.base_url) for t in page],
        has_more=len(rows) > limit,
        next_after=page[-1].id if len(rows) > limit else None,
    )


async def _notify(services: Services, task: Task, *, cancelled: bool) -> None:
    """Tell workers what changed; a lost message is caught up by lease renewal and reconciling."""
    try:
        if cancelled:
            await services.queue.announce_cancel(task.id)
            async with services.db.session() as session:
                waiting = await store.next_waiting_turn(session, task)
            if waiting is not None:
                await services.queue.publish(waiting[1], waiting[0])
        else:
            await services.queue.publish(task.queue, task.id)
    except QueueUnavailable as exc:
        log.warning("task %s: queue unreachable; the reconciler catches up: %s", task.id, exc)


@router.post("/tasks/{task_id}/cancel", response_model=TaskView)
async def cancel_task(
    task_id: str, session: SessionDep, services: ServicesDep, request: Request
) -> TaskView:
    """Cancel a `PENDING` or `RUNNING` task; a finished one is a 409."""
    task = await store.cancel_task(session, task_id)
    await _notify(services, task, cancelled=True)
    return task_view(task, request.base_url)


@router.post(
    "/tasks/{task_id}/retry", response_model=TaskView, status_code=status.HTTP_202_ACCEPTED
)
async def retry_task(
    task_id: str, session: SessionDep, services: ServicesDep, request: Request
) -> TaskView:
    """Queue a `FAILED` or `CANCELLED` task again, with a fresh set of attempts."""
    task = await store.retry_task(session, task_id)
    await _notify(services, task, cancelled=False)
    return task_view(task, request.base_url)
