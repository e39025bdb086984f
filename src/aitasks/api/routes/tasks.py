"""GET /v1/tasks/{task_id}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from aitasks.api.deps import SessionDep
from aitasks.api.schemas import TaskView
from aitasks.api.views import task_view
from aitasks.store import tasks as store

router = APIRouter(prefix="/v1", tags=["tasks"])


@router.get("/tasks/{task_id}", response_model=TaskView)
async def read_task(task_id: str, session: SessionDep, request: Request) -> TaskView:
    """A task's status, and its result or error once it has finished."""
    return task_view(await store.get_task(session, task_id), request.base_url)
