"""GET /v1/files/{file_id}: generated images, with their content type. Served to their owner, or
to anyone holding a signed link that has not expired (what task results carry while auth is on).

The bytes are streamed from whichever store holds them (a folder, the database, an object store),
a piece at a time; a file whose bytes are missing is a 404, like one that never existed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from aitasks.api.auth import authenticate
from aitasks.api.deps import ServicesDep, SessionDep
from aitasks.api.responses import errors
from aitasks.errors import FileNotFound
from aitasks.store import file_records

router = APIRouter(prefix="/v1", tags=["files"])


@router.get(
    "/files/{file_id}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **errors(404)},
    # Either a key or a signed link: both ways, documented.
    openapi_extra={"security": [{"HTTPBearer": []}, {}]},
)
async def read_file(
    file_id: str,
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    expires: Annotated[int | None, Query(description="From a signed link.")] = None,
    signature: Annotated[
        str | None, Query(max_length=128, description="From a signed link.")
    ] = None,
) -> Response:
    """The file's bytes. Files never change, so clients may cache them for good."""
    signer = services.file_signer
    signed = (
        signer is not None
        and expires is not None
        and signature is not None
        and signer.verify(file_id, expires, signature)
    )
    # A bad or expired signature is no worse than none: the caller's key decides then.
    tenant = None if signed else (await authenticate(request)).tenant
    stored = await file_records.get_file(session, file_id, tenant=tenant)
    if stored is None:
        raise FileNotFound(file_id)
    try:
        pieces = await services.storage.open(stored.storage_key)
    except FileNotFoundError:
        raise FileNotFound(file_id) from None
    return StreamingResponse(
        pieces,
        media_type=stored.content_type,
        headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "Content-Length": str(stored.size),
        },
    )
