"""GET /v1/files/{file_id}: generated images, with their content type."""

from __future__ import annotations

from fastapi import APIRouter, Response

from aitasks.api.deps import ServicesDep, SessionDep
from aitasks.errors import FileNotFound
from aitasks.store import tasks as store

router = APIRouter(prefix="/v1", tags=["files"])


@router.get("/files/{file_id}", response_class=Response)
async def read_file(file_id: str, session: SessionDep, services: ServicesDep) -> Response:
    """The file's bytes. Files never change, so clients may cache them for good."""
    stored = await store.get_file(session, file_id)
    if stored is None:
        raise FileNotFound(file_id)
    try:
        data = await services.storage.get(stored.storage_key)
    except FileNotFoundError:
        raise FileNotFound(file_id) from None
    return Response(
        data,
        media_type=stored.content_type,
        headers={"Cache-Control": "private, max-age=31536000, immutable"},
    )
