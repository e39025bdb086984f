"""OpenAI's Batch API: `POST /openai/v1/batches` (an uploaded JSONL of requests to
`/v1/chat/completions`, `/v1/responses` or `/v1/images/generations`), `GET` one or the list
(paginated), and `POST .../cancel`, with OpenAI's statuses, `request_counts` and output and error
files by `custom_id`, so the official SDK runs a batch unchanged.

The input file is read a piece at a time and every line checked before any is queued (JSON, a
unique `custom_id`, `method` POST, `url` the batch's endpoint, a body that endpoint takes, a
model of the table of the right kind): one bad line and the batch is `failed` with each bad
line's number and reason in `errors`, nothing queued. Its tasks run in the batch lane.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aitasks.api.auth import CallerDep, authenticate
from aitasks.api.deps import ServicesDep
from aitasks.api.openai.files import owned_file
from aitasks.api.openai.wire import ChatCompletionRequest, ImageRequest
from aitasks.errors import FileNotFound, InvalidRequest
from aitasks.lifecycle import batches
from aitasks.lifecycle.batches import BatchRequest, LineError
from aitasks.routing import ModelKind
from aitasks.services import Services
from aitasks.store import batches as store
from aitasks.store.models import Batch, as_utc

router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])

ENDPOINTS = {
    "/v1/chat/completions": ModelKind.CHAT,
    "/v1/responses": ModelKind.CHAT,
    "/v1/images/generations": ModelKind.IMAGE,
}
CHAT_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed", "user")
ROLES = {"developer": "system"}


class BatchCreate(BaseModel):
    input_file_id: str = Field(max_length=64)
    endpoint: str
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


class InputText(BaseModel):
    type: str = "input_text"
    text: str | None = None


class InputMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[InputText]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)


class ResponsesRequest(BaseModel):
    """The part of a `/v1/responses` body a batch line may use: text in, text out."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[InputMessage]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)


class LineRefused(Exception):
    """A line's request cannot be taken: its code, message and the part at fault."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def _chat(body: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    request = ChatCompletionRequest.model_validate(body)
    if request.stream:
        raise LineRefused("invalid_request", "stream is not taken in a batch", "body.stream")
    if (request.n or 1) > 1:
        raise LineRefused("invalid_request", "n > 1 is not supported: one line per choice",
                          "body.n")  # fmt: skip
    if request.tools or any(m.image_urls() or m.tool_calls for m in request.messages):
        raise LineRefused("invalid_request", "tools and images are not taken in a batch line",
                          "body.messages")  # fmt: skip
    *earlier, last = request.messages
    if last.role != "user" or not last.text().strip():
        raise LineRefused("invalid_request", "the last message must be the user's, with text",
                          "body.messages")  # fmt: skip
    context = [{"role": ROLES.get(m.role, m.role), "content": m.text()} for m in earlier]
    params = {name: getattr(request, name) for name in CHAT_PARAMS if getattr(request, name)}
    if request.max_completion_tokens is not None:
        params["max_tokens"] = request.max_completion_tokens
    return request.model, last.text(), context, params


def _responses(body: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    request = ResponsesRequest.model_validate(body)
    context: list[dict[str, Any]] = []
    if request.instructions:
        context.append({"role": "system", "content": request.instructions})
    if isinstance(request.input, str):
        prompt = request.input
    else:
        *earlier, last = request.input or [InputMessage(role="user", content="")]
        if last.role != "user":
            raise LineRefused("invalid_request", "the last input must be the user's", "body.input")
        context += [{"role": ROLES.get(m.role, m.role), "content": m.text()} for m in earlier]
        prompt = last.text()
    params: dict[str, Any] = {
        name: value
        for name, value in (("temperature", request.temperature), ("top_p", request.top_p),
                            ("max_tokens", request.max_output_tokens))
        if value is not None
    }  # fmt: skip
    return request.model, prompt, context, params


def _images(body: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    request = ImageRequest.model_validate(body)
    params: dict[str, Any] = {"n": request.n}
    if request.size:
        params["size"] = request.size
    return request.model, request.prompt, [], params


PARSERS = {
    "/v1/chat/completions": _chat,
    "/v1/responses": _responses,
    "/v1/images/generations": _images,
}


def parse_line(number: int, raw: bytes, endpoint: str) -> BatchRequest:
    """One line of the input file as a request of the batch, or `LineRefused` saying why not."""
    try:
        line = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LineRefused("invalid_json", f"the line is not JSON: {exc}") from None
    if not isinstance(line, dict):
        raise LineRefused("invalid_json", "the line is not a JSON object")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > 200:
        raise LineRefused("invalid_custom_id", "custom_id must be a string of 1 to 200 characters",
                          "custom_id")  # fmt: skip
    if line.get("method") != "POST":
        raise LineRefused("invalid_method", "method must be POST", "method")
    if line.get("url") != endpoint:
        raise LineRefused("invalid_url", f"url must be the batch's endpoint, {endpoint}", "url")
    body = line.get("body")
    if not isinstance(body, dict):
        raise LineRefused("invalid_request", "body must be a JSON object", "body")
    try:
        model, prompt, context, params = PARSERS[endpoint](body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["body", *(str(part) for part in first["loc"])])
        raise LineRefused("invalid_request", f"{where}: {first['msg']}", where) from None
    return BatchRequest(
        line=number, kind=ENDPOINTS[endpoint], model=model, prompt=prompt, custom_id=custom_id,
        params=params or None, context=context or None,
    )  # fmt: skip


async def file_lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """The file's lines, numbered from 1, as its pieces arrive (blank lines skipped)."""
    number, rest = 0, b""
    async for piece in pieces:
        *lines, rest = (rest + piece).split(b"\n")
        for line in lines:
            number += 1
            if line.strip():
                yield number, line
    if rest.strip():
        yield number + 1, rest


def batch_object(batch: Batch, progress: batches.Progress) -> dict[str, Any]:
    """A batch as OpenAI's `Batch`."""

    def unix(name: str) -> int | None:
        moment = as_utc(getattr(batch, name))
        return int(moment.timestamp()) if moment else None

    status = batch.status
    if status == "in_progress" and progress.ended >= batch.total:
        status = "finalizing"
    errors = None
    if batch.errors:
        errors = {"object": "list", "data": batch.errors}
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "errors": errors,
        "input_file_id": batch.input_file_id or "", "completion_window": batch.completion_window,
        "status": status, "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        **{name: unix(name) for name in (
            "created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at",
            "failed_at", "expired_at", "cancelling_at", "cancelled_at")},
        "request_counts": {"total": batch.total, "completed": progress.succeeded,
                           "failed": progress.failed},
        "metadata": batch.meta,
    }  # fmt: skip


async def _answer(services: Services, batch: Batch) -> JSONResponse:
    return JSONResponse(batch_object(batch, await batches.progress(services, batch)))


@router.post("/batches")
async def create_batch(body: BatchCreate, services: ServicesDep, caller: CallerDep) -> JSONResponse:
    if body.endpoint not in ENDPOINTS:
        raise InvalidRequest(
            f"endpoint must be one of {', '.join(ENDPOINTS)}, not {body.endpoint!r}",
            param="endpoint",
        )
    record = await owned_file(services, body.input_file_id, caller.tenant)
    if record.purpose != "batch":
        raise InvalidRequest(
            f"file {record.id!r} was not uploaded with purpose 'batch'", param="input_file_id"
        )
    try:
        pieces = await services.storage.open(record.storage_key)
    except FileNotFoundError:
        raise FileNotFound(record.id) from None
    requests: list[BatchRequest] = []
    refused: list[LineError] = []
    async for number, raw in file_lines(pieces):
        try:
            requests.append(parse_line(number, raw, body.endpoint))
        except LineRefused as exc:
            refused.append(LineError(number, exc.code, exc.message, exc.param))
    batch = await batches.create_batch(
        services, caller, requests, refused, surface="openai", endpoint=body.endpoint,
        input_file_id=record.id, metadata=body.metadata,
        completion_window=body.completion_window,
    )  # fmt: skip
    return await _answer(services, batch)


@router.get("/batches/{batch_id}")
async def retrieve_batch(batch_id: str, services: ServicesDep, caller: CallerDep) -> JSONResponse:
    async with services.db.session() as session:
        batch = await store.get_batch(session, batch_id, tenant=caller.tenant)
    return await _answer(services, batch)


@router.get("/batches")
async def list_batches(
    services: ServicesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    async with services.db.session() as session:
        rows = await store.list_batches(session, tenant=caller.tenant, after=after, limit=limit + 1)
    data = [batch_object(b, await batches.progress(services, b)) for b in rows[:limit]]
    return JSONResponse(
        {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
         "last_id": data[-1]["id"] if data else None, "has_more": len(rows) > limit}
    )  # fmt: skip


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, services: ServicesDep, caller: CallerDep) -> JSONResponse:
    return await _answer(services, await batches.cancel_batch(services, caller, batch_id))
