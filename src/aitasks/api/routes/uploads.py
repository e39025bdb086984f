"""POST /v1/files: upload an image for chat turns to send (`images` on the seed API, an
`image_url` on the OpenAI one). The bytes go to the file storage seam, the record is the
caller's tenant's, and `GET /v1/files/{id}` serves it back as it serves generated images."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile, status
from pydantic import BaseModel, Field

from aitasks.api.auth import CallerDep, authenticate
from aitasks.api.deps import LinksDep, ServicesDep
from aitasks.api.responses import errors
from aitasks.files import file_key
from aitasks.lifecycle.chat_input import decode_image
from aitasks.store import file_records
from aitasks.store.models import as_utc, new_id

router = APIRouter(prefix="/v1", tags=["files"], dependencies=[Depends(authenticate)])


class FileView(BaseModel):
    """An uploaded file, in the shape of OpenAI's file object, with what an image has besides."""

    id: str = Field(description="Send it in a chat turn's `images`, or as an image_url.")
    object: str = "file"
    bytes: int
    created_at: int = Field(description="Unix seconds.")
    filename: str | None
    purpose: str
    content_type: str
    width: int
    height: int
    url: str = Field(description="Where it is served (GET /v1/files/{id}).")


@router.post(
    "/files",
    status_code=status.HTTP_201_CREATED,
    response_model=FileView,
    responses=errors(400, 413, 415),
)
async def upload_file(
    file: Annotated[UploadFile, File(description="A PNG, JPEG, GIF or WebP image.")],
    services: ServicesDep,
    caller: CallerDep,
    links: LinksDep,
    purpose: Annotated[str, Form(max_length=40)] = "vision",
) -> FileView:
    """Upload an image (multipart/form-data, field `file`), up to `AITASKS_MAX_IMAGE_BYTES`; what
    the bytes are is checked, whatever the upload claims."""
    data = await file.read(services.settings.max_image_bytes + 1)
    image = decode_image(data, services.settings, "file")
    file_id = new_id()
    key = file_key(file_id)
    await services.storage.put(key, data, content_type=image.media_type)
    try:
        async with services.db.session() as session:
            record = await file_records.add_upload(
                session,
                file_id=file_id,
                tenant=caller.tenant,
                content_type=image.media_type,
                size=len(data),
                key=key,
            )
    except BaseException:
        await services.storage.delete([key])  # no record names them
        raise
    created: datetime = as_utc(record.created_at)
    return FileView(
        id=file_id,
        bytes=len(data),
        created_at=int(created.timestamp()),
        filename=(file.filename or None) and file.filename[:200],
        purpose=purpose,
        content_type=image.media_type,
        width=image.width,
        height=image.height,
        url=links.file(file_id),
    )
