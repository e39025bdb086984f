"""The seed's batches: `POST /v1/batches` (a JSON list of seed submits), `GET /v1/batches/{id}`,
its `/results` (JSONL, one line per request, streamed), `/cancel`, and the caller's list.

The whole batch is checked before any of it is queued: a bad line makes it `failed` (422, with
each bad line's number and reason), and nothing runs. Its tasks run in the batch lane.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from aitasks.api.auth import CallerDep, authenticate
from aitasks.api.deps import LinksDep, ServicesDep, SessionDep
from aitasks.api.responses import errors, json_response
from aitasks.errors import InvalidBatch
from aitasks.lifecycle import batches
from aitasks.lifecycle.batch_output import seed_results
from aitasks.services import Services
from aitasks.store import batches as store
from aitasks.store.models import Batch, TaskStatus, as_utc

router = APIRouter(prefix="/v1", tags=["batches"], dependencies=[Depends(authenticate)])

MAX_PAGE = 100


class BatchItem(BaseModel):
    """One request of a batch: a seed submit (chat or image, by its model)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    model: str = Field(min_length=1, max_length=200)
    conversation_id: str | None = Field(
        default=None, description="Continue this conversation (as its next turn, in line order)."
    )
    custom_id: str | None = Field(
        default=None, max_length=200, description="Yours, unique in the batch; in its results."
    )


ITEM = TypeAdapter(BatchItem)


class BatchCreate(BaseModel):
    """A batch with its options; a bare JSON list of requests is one with the defaults."""

    requests: list[Any] = Field(description="Seed submits: {prompt, model, conversation_id?, "
                                "custom_id?}.")  # fmt: skip
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    completion_window: Literal["24h"] = "24h"


class BatchCounts(BaseModel):
    total: int
    pending: int = Field(description="Not yet started (PENDING).")
    running: int
    succeeded: int
    failed: int = Field(description="Ended without an answer: FAILED, EXPIRED or CANCELLED.")


class BatchView(BaseModel):
    id: str
    object: str = "batch"
    status: str = Field(
        description="in_progress, finalizing, completed, failed, expired, cancelling, cancelled."
    )
    counts: BatchCounts
    errors: list[dict[str, Any]] | None = Field(
        description="A failed batch's bad lines: {line, code, message, param}."
    )
    metadata: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime | None
    finished_at: datetime | None
    results_url: str


class BatchList(BaseModel):
    object: str = "list"
    data: list[BatchView]
    has_more: bool
    next_after: str | None


def shown_status(batch: Batch, progress: batches.Progress) -> str:
    """Its status; `finalizing` once every task has ended and until the batch is ended."""
    if batch.status == "in_progress" and progress.ended >= batch.total:
        return "finalizing"
    return batch.status


async def batch_view(services: Services, batch: Batch) -> BatchView:
    progress = await batches.progress(services, batch)
    running = progress.counts.get(TaskStatus.RUNNING, 0)
    finished = batch.completed_at or batch.failed_at or batch.expired_at or batch.cancelled_at
    return BatchView(
        id=batch.id,
        status=shown_status(batch, progress),
        counts=BatchCounts(
            total=batch.total,
            pending=max(0, batch.total - progress.ended - running)
            if batch.status != "failed"
            else 0,
            running=running,
            succeeded=progress.succeeded,
            failed=progress.failed,
        ),
        errors=batch.errors,
        metadata=batch.meta,
        created_at=as_utc(batch.created_at),
        expires_at=as_utc(batch.expires_at),
        finished_at=as_utc(finished),
        results_url=f"/v1/batches/{batch.id}/results",
    )


@router.post(
    "/batches",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchView,
    responses=errors(400, 413),
)
async def create_batch(
    body: Annotated[list[Any] | BatchCreate, Body()],
    services: ServicesDep,
    caller: CallerDep,
) -> Response:
    """Accept many seed submits as one batch (202): its tasks run in the batch lane; poll it, then
    read its `/results`. Checked whole first: one bad line and it is `failed` (422, every bad line
    named in `errors`), nothing queued."""
    options = body if isinstance(body, BatchCreate) else BatchCreate(requests=body)
    requests: list[batches.BatchRequest] = []
    bad: list[batches.LineError] = []
    for index, raw in enumerate(options.requests):
        try:
            item = ITEM.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(part) for part in first["loc"]) or None
            bad.append(batches.LineError(index + 1, "invalid_request", first["msg"], param))
            continue
        requests.append(
            batches.BatchRequest(
                line=index + 1, kind=None, model=item.model, prompt=item.prompt,
                custom_id=item.custom_id, conversation_id=item.conversation_id,
            )
        )  # fmt: skip
    batch = await batches.create_batch(
        services, caller, requests, bad, surface="seed", endpoint="/v1/batches",
        metadata=options.metadata, completion_window=options.completion_window,
    )  # fmt: skip
    view = await batch_view(services, batch)
    if batch.status == "failed":
        count = len(batch.errors or [])
        raise InvalidBatch(
            f"{count} line(s) of the batch are invalid; nothing was queued",
            param="requests",
            batch_id=batch.id,
            errors=batch.errors,
        )
    return json_response(view, status.HTTP_202_ACCEPTED)


@router.get("/batches/{batch_id}", response_model=BatchView, responses=errors(404))
async def read_batch(
    batch_id: str, services: ServicesDep, session: SessionDep, caller: CallerDep
) -> Response:
    """The batch's status and its tasks counted by how far they have come."""
    batch = await store.get_batch(session, batch_id, tenant=caller.tenant)
    return json_response(await batch_view(services, batch))


@router.get("/batches", response_model=BatchList, responses=errors(400))
async def list_batches(
    services: ServicesDep,
    session: SessionDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The caller's batches, newest first."""
    rows = await store.list_batches(session, tenant=caller.tenant, after=after, limit=limit + 1)
    page = [await batch_view(services, b) for b in rows[:limit]]
    more = len(rows) > limit
    return json_response(
        BatchList(data=page, has_more=more, next_after=page[-1].id if more and page else None)
    )


@router.get(
    "/batches/{batch_id}/results",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/jsonl": {}}}, **errors(404)},
)
async def read_results(
    batch_id: str, services: ServicesDep, session: SessionDep, caller: CallerDep, links: LinksDep
) -> StreamingResponse:
    """One JSON line per request, in order: `index`, `custom_id`, `task_id`, `conversation_id`,
    `status`, `result` (a chat reply's text, an image turn's URLs) and `error`, as each stands
    now. Streamed a page at a time, however large the batch."""
    batch = await store.get_batch(session, batch_id, tenant=caller.tenant)
    return StreamingResponse(seed_results(services, batch, links), media_type="application/jsonl")


@router.post("/batches/{batch_id}/cancel", response_model=BatchView, responses=errors(404))
async def cancel_batch(batch_id: str, services: ServicesDep, caller: CallerDep) -> Response:
    """Cancel the batch: what has not run never will, what runs stops; it is `cancelling` until
    every task has ended, then `cancelled` (its finished lines keep their results)."""
    batch = await batches.cancel_batch(services, caller, batch_id)
    return json_response(await batch_view(services, batch))
