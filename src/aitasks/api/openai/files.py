"""OpenAI's Files API for batches: `POST /openai/v1/files` (multipart, `purpose: "batch"`, a JSONL
of requests), `GET /openai/v1/files[/{id}[/content]]` and `DELETE /openai/v1/files/{id}`.

An input file's bytes go to the file storage seam (`AITASKS_FILE_STORE`), up to
`AITASKS_MAX_BATCH_BYTES`, and are checked when a batch is made of them. A batch's output and
error files have no bytes stored: their content is made from the batch's tasks, a page at a
time, whenever it is read (`lifecycle/batch_output.py`). A file is its tenant's: another
tenant's id is a 404, as a missing one is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from aitasks.api.auth import CallerDep, authenticate
from aitasks.api.deps import ServicesDep
from aitasks.errors import FileNotFound, InvalidRequest, PayloadTooLarge
from aitasks.files import file_key
from aitasks.lifecycle.batch_output import RESULT_PURPOSES, result_file
from aitasks.services import Services
from aitasks.store import batches as store
from aitasks.store import file_records
from aitasks.store.models import StoredFile, as_utc, new_id

router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])

# What a file's `purpose` reads as: a batch's error file is one of its outputs too, for OpenAI.
SHOWN_PURPOSE = {"batch_error": "batch_output"}


def file_object(record: StoredFile) -> dict[str, Any]:
    """A file as OpenAI's `FileObject`."""
    created = as_utc(record.created_at)
    return {
        "id": record.id, "object": "file", "bytes": record.size,
        "created_at": int(created.timestamp()) if created else 0,
        "filename": record.filename or record.id,
        "purpose": SHOWN_PURPOSE.get(record.purpose or "", record.purpose or "user_data"),
        "status": "processed", "expires_at": None, "status_details": None,
    }  # fmt: skip


async def owned_file(services: Services, file_id: str, tenant: str) -> StoredFile:
    """The tenant's file, or a 404 (another tenant's too)."""
    async with services.db.session() as session:
        record = await file_records.get_file(session, file_id, tenant=tenant)
    if record is None:
        raise FileNotFound(file_id)
    return record


async def content(services: Services, record: StoredFile, tenant: str) -> AsyncIterator[bytes]:
    """A file's bytes: from the store, or made from its batch's tasks (an output or error
    file). Raises `FileNotFound` before yielding when there are none."""
    if record.purpose not in RESULT_PURPOSES:
        try:
            return await services.storage.open(record.storage_key)
        except FileNotFoundError:
            raise FileNotFound(record.id) from None
    async with services.db.session() as session:
        batch = await store.batch_of_file(session, record.id, tenant=tenant)
    if batch is None:
        raise FileNotFound(record.id)
    which = "output" if batch.output_file_id == record.id else "error"
    return result_file(services, batch, which)


@router.post("/files")
async def create_file(
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form(max_length=40)],
    services: ServicesDep,
    caller: CallerDep,
) -> JSONResponse:
    if purpose != "batch":
        raise InvalidRequest(
            f"purpose {purpose!r} is not taken here; upload a batch's requests with purpose "
            "'batch' (images go to POST /v1/files)",
            param="purpose",
        )
    most = services.settings.max_batch_bytes
    data = await file.read(most + 1)
    if len(data) > most:
        raise PayloadTooLarge(
            f"the file is over the limit of {most} bytes (AITASKS_MAX_BATCH_BYTES)",
            param="file",
            limit=most,
        )
    file_id = new_id()
    key = file_key(file_id)
    await services.storage.put(key, data, content_type="application/jsonl")
    try:
        async with services.db.session() as session:
            record = await store.add_file(
                session, file_id=file_id, tenant=caller.tenant, purpose="batch", size=len(data),
                name=(file.filename or "batch.jsonl")[:300], key=key,
            )  # fmt: skip
    except BaseException:
        await services.storage.delete([key])  # no record names them
        raise
    return JSONResponse(file_object(record))


@router.get("/files")
async def list_files(
    services: ServicesDep,
    caller: CallerDep,
    purpose: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
) -> JSONResponse:
    async with services.db.session() as session:
        records = await store.list_files(session, tenant=caller.tenant, limit=limit)
    data = [file_object(r) for r in records]
    if purpose is not None:
        data = [f for f in data if f["purpose"] == purpose]
    return JSONResponse({"object": "list", "data": data, "has_more": False})


@router.get("/files/{file_id}")
async def retrieve_file(file_id: str, services: ServicesDep, caller: CallerDep) -> JSONResponse:
    return JSONResponse(file_object(await owned_file(services, file_id, caller.tenant)))


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, services: ServicesDep, caller: CallerDep) -> Response:
    """The file's bytes, streamed (a batch's output or error file: made from its tasks)."""
    record = await owned_file(services, file_id, caller.tenant)
    pieces = await content(services, record, caller.tenant)
    return StreamingResponse(pieces, media_type="application/jsonl")


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, services: ServicesDep, caller: CallerDep) -> JSONResponse:
    record = await owned_file(services, file_id, caller.tenant)
    async with services.db.session() as session:
        await store.delete_file(session, record.id)
    await services.storage.delete([record.storage_key])
    return JSONResponse({"id": record.id, "object": "file", "deleted": True})
