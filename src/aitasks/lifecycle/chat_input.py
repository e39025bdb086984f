"""What a chat turn carries beyond its prompt, checked before anything is written: tools and the
choice among them, structured output, images (a `data:` URL, a file of this service, or a remote
URL only for a provider that fetches it), and tool results answering the pending calls.

Every surface builds a `ChatTurn` from its own wire shapes and hands it to `submit_task`, which
checks it against the model (`check`: a feature the model cannot serve is a 400 naming both),
stores the images' bytes just before its transaction (`store`), and writes the turn's structure
with the task (`turn_input`, `stored_context`, `new_files`).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from PIL import Image, UnidentifiedImageError

from aitasks.auth.caller import Caller
from aitasks.config import Settings
from aitasks.errors import (
    InvalidRequest,
    LimitExceeded,
    PayloadTooLarge,
    UnsupportedFeature,
    UnsupportedMediaType,
)
from aitasks.files import file_key
from aitasks.providers.messages import render_results
from aitasks.routing import FETCHES_IMAGE_URLS, ModelSpec
from aitasks.services import Services
from aitasks.store import file_records
from aitasks.store.messages import pending_tool_calls
from aitasks.store.models import StoredFile, new_id, utcnow

log = logging.getLogger(__name__)

TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TOOLS = 128
# What models read, by Pillow's name for the format.
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
# More pixels than this is refused before it is decoded (a decompression bomb, or no photo).
MAX_IMAGE_PIXELS = 50_000_000
DATA_URL = re.compile(r"data:([^,;]*)((?:;[^,;]*)*),(.*)", re.DOTALL)
FILE_ID = re.compile(r"[0-9a-f]{32}")
# A link to one of this service's files (`GET /v1/files/{id}`, signed or not).
FILE_URL = re.compile(r"https?://[^/]+(?:/[^?#]*)?/v1/files/([0-9a-f]{32})(?:[?#].*)?")


@dataclass(frozen=True, slots=True)
class DecodedImage:
    media_type: str
    width: int
    height: int


def decode_image(data: bytes, settings: Settings, param: str) -> DecodedImage:
    """The kind and size of image bytes: 413 over `AITASKS_MAX_IMAGE_BYTES`, 415 for bytes that
    are not a PNG, JPEG, GIF or WebP image (whatever they claim to be)."""
    limit = settings.max_image_bytes
    if len(data) > limit:
        raise PayloadTooLarge(
            f"{param}: the image is {len(data)} bytes; the limit is {limit} "
            "(AITASKS_MAX_IMAGE_BYTES)",
            param=param,
            limit=limit,
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        kind, width, height = None, 0, 0
    if kind not in IMAGE_TYPES:
        raise UnsupportedMediaType(
            f"{param} is not an image: send a PNG, JPEG, GIF or WebP image", param=param
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidRequest(f"{param}: the image has over {MAX_IMAGE_PIXELS} pixels", param=param)
    return DecodedImage(IMAGE_TYPES[str(kind)], width, height)


@dataclass(slots=True)
class PendingImage:
    """An image of the request, until it is stored: new bytes (from a `data:` URL), one of the
    tenant's files, or a remote URL."""

    param: str
    data: bytes | None = None
    decoded: DecodedImage | None = None
    file_id: str | None = None
    url: str | None = None
    # Set once checked or stored: the image as the message keeps it.
    stored: dict[str, Any] | None = None


def pending_image(ref: str, settings: Settings, param: str) -> PendingImage:
    """An image named by the request: a `data:` URL (decoded and checked now), a file of this
    service (its id, or a link to it), or an http(s) URL."""
    ref = ref.strip()
    data_url = DATA_URL.fullmatch(ref)
    if data_url is not None:
        if ";base64" not in data_url.group(2):
            raise InvalidRequest(f"{param}: a data: URL must be base64 (data:image/png;base64,…)")
        try:
            data = base64.b64decode(data_url.group(3), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                f"{param}: the data: URL is not valid base64", param=param
            ) from None
        return PendingImage(param, data=data, decoded=decode_image(data, settings, param))
    linked = FILE_URL.fullmatch(ref)
    if linked is not None or FILE_ID.fullmatch(ref):
        return PendingImage(param, file_id=linked.group(1) if linked else ref)
    if ref.startswith(("https://", "http://")) and len(ref) <= 2000:
        return PendingImage(param, url=ref)
    raise InvalidRequest(
        f"{param}: an image is a data: URL, the id of a file (POST /v1/files) or an http(s) URL",
        param=param,
    )


async def find_image_files(services: Services, tenant: str, images: list[PendingImage]) -> None:
    """Every image named by id is one of the tenant's image files (else a 400 naming it); each
    image named by id or URL gets its stored shape."""
    wanted = [i.file_id for i in images if i.file_id]
    found: dict[str, StoredFile] = {}
    if wanted:
        async with services.db.session() as session:
            found = await file_records.owned_files(session, wanted, tenant=tenant)
    for image in images:
        if image.file_id is not None:
            record = found.get(image.file_id)
            if record is None or not record.content_type.startswith("image/"):
                raise InvalidRequest(
                    f"{image.param}: no image file {image.file_id!r}", param=image.param
                )
            image.stored = {"file_id": record.id, "media_type": record.content_type}
        elif image.url is not None:
            image.stored = {"url": image.url}


def check_schema(schema: object, param: str) -> None:
    """A 400 unless `schema` is a JSON schema (an object that a validator accepts)."""
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{param} must be a JSON schema (an object)", param=param)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"{param} is not a JSON schema: {exc.message}", param=param) from None


@dataclass(slots=True)
class ChatTurn:
    """A chat submit's structure: tools, structured output, images and tool results. `tools` are
    `{"name", "description", "parameters"}`; `tool_choice` "auto" | "none" | "required" |
    `{"name"}`; `response_format` `{"type", "name", "schema", "strict"}`; `tool_results`
    `{"tool_call_id", "content"}`; `context` is a client's own earlier messages (the OpenAI way),
    their images as `PendingImage`s until stored."""

    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    images: list[PendingImage] = field(default_factory=list)
    tool_results: list[dict[str, Any]] | None = None
    context: list[dict[str, Any]] | None = None
    # The records of the new images stored (`store`), written with the task.
    new_files: list[dict[str, Any]] = field(default_factory=list)
    # Tool results answer the calls of the context's last reply, even in a conversation (a
    # response continuing an earlier one than its conversation's latest).
    results_answer_context: bool = False

    def __post_init__(self) -> None:
        self._check_tools()
        if self.response_format is not None and self.response_format.get("schema") is not None:
            check_schema(self.response_format["schema"], "response_format.json_schema.schema")

    def _check_tools(self) -> None:
        tools = self.tools or []
        if len(tools) > MAX_TOOLS:
            raise LimitExceeded(
                f"tools has {len(tools)} entries; at most {MAX_TOOLS}", param="tools"
            )
        names = [t["name"] for t in tools]
        for index, tool in enumerate(tools):
            if not TOOL_NAME.fullmatch(tool["name"]):
                raise InvalidRequest(
                    f"tools[{index}].function.name must be 1 to 64 letters, digits, _ or -",
                    param="tools",
                )
            check_schema(tool["parameters"], f"tools[{index}].function.parameters")
        if len(set(names)) != len(names):
            raise InvalidRequest("tools has two functions of the same name", param="tools")
        choice = self.tool_choice
        if choice is not None and not tools and choice != "none":
            raise InvalidRequest("tool_choice needs tools", param="tool_choice")
        if isinstance(choice, dict) and choice["name"] not in names:
            raise InvalidRequest(
                f"tool_choice names {choice['name']!r}, which is not one of the tools",
                param="tool_choice",
            )

    def checked_fields(self) -> list[tuple[str, object]]:
        """Its text fields by the request's names, for checks of every field's text."""
        return [
            ("messages", self.context),
            ("tools", self.tools),
            ("tool_choice", self.tool_choice),
            ("response_format", self.response_format),
            ("tool_results", self.tool_results),
        ]

    @property
    def all_images(self) -> list[PendingImage]:
        context = [i for m in self.context or () for i in m.get("images") or ()]
        return [*context, *self.images]

    def params(self) -> dict[str, object]:
        """What the worker needs of it beside the sampling parameters (`worker/chat_request.py`)."""
        params: dict[str, object] = {}
        if self.tools:
            params["tools"] = self.tools
        if self.tool_choice is not None:
            params["tool_choice"] = self.tool_choice
        if self.parallel_tool_calls is not None:
            params["parallel_tool_calls"] = self.parallel_tool_calls
        if self.response_format is not None and self.response_format.get("type") != "text":
            params["response_format"] = self.response_format
        return params

    def prompt(self, prompt: str) -> str:
        """The turn's text: the prompt, or the tool results' contents when it answers calls."""
        return render_results(self.tool_results) if self.tool_results else prompt

    async def check(
        self, services: Services, caller: Caller, spec: ModelSpec, conversation_id: str | None
    ) -> None:
        """Refuse what the model cannot serve, images that are not the tenant's, and tool results
        that answer no pending call; reads only."""
        uses_tools = bool(self.tools or self.tool_results) or any(
            m.get("tool_calls") or m.get("role") == "tool" for m in self.context or ()
        )
        if uses_tools and "tools" not in spec.features:
            raise UnsupportedFeature(
                f"model {spec.name!r} does not support tools (function calling)", param="tools"
            )
        images = self.all_images
        if images:
            await self._check_images(services, caller, spec, images)
        self._check_context_results()
        if self.tool_results:
            if conversation_id is not None and not self.results_answer_context:
                async with services.db.session() as session:
                    calls = await pending_tool_calls(session, conversation_id, tenant=caller.tenant)
            else:
                last = (self.context or [{}])[-1]
                calls = (
                    list(last.get("tool_calls") or []) if last.get("role") == "assistant" else []
                )
            answer_calls(self.tool_results, calls)

    async def _check_images(
        self, services: Services, caller: Caller, spec: ModelSpec, images: list[PendingImage]
    ) -> None:
        param = images[0].param
        most = services.settings.max_input_images
        if len(images) > most:
            raise LimitExceeded(
                f"the request holds {len(images)} images; the limit is {most} "
                "(AITASKS_MAX_INPUT_IMAGES)",
                param=param,
                limit=most,
            )
        if "vision" not in spec.features:
            raise UnsupportedFeature(
                f"model {spec.name!r} does not support images (vision)", param=param
            )
        remote = [i for i in images if i.url]
        if remote and spec.served_by not in FETCHES_IMAGE_URLS:
            raise UnsupportedFeature(
                f"model {spec.name!r} is served by {spec.served_by!r}, which is not sent image "
                "URLs (this service never fetches them): send a data: URL, or upload the image "
                "(POST /v1/files) and send its id",
                param=remote[0].param,
            )
        await find_image_files(services, caller.tenant, images)

    def _check_context_results(self) -> None:
        """Every tool message of a client's context answers a call made before it."""
        made: set[str] = set()
        for index, message in enumerate(self.context or ()):
            made.update(c["id"] for c in message.get("tool_calls") or ())
            if message.get("role") == "tool" and message.get("tool_call_id") not in made:
                raise InvalidRequest(
                    f"messages[{index}] answers tool_call_id {message.get('tool_call_id')!r}, "
                    "which no assistant message before it made",
                    param="messages",
                )

    async def store(self, services: Services, tenant: str) -> None:
        """Put the new images' bytes in file storage (just before the task's transaction), and
        make their records, which the transaction writes with the task."""
        for image in self.all_images:
            if image.data is None or image.decoded is None:
                continue
            file_id = new_id()
            key = file_key(file_id)
            await services.storage.put(key, image.data, content_type=image.decoded.media_type)
            image.stored = {
                "file_id": file_id,
                "media_type": image.decoded.media_type,
                "width": image.decoded.width,
                "height": image.decoded.height,
            }
            self.new_files.append(
                {"id": file_id, "tenant": tenant, "content_type": image.decoded.media_type,
                 "size": len(image.data), "storage_key": key, "created_at": utcnow()}
            )  # fmt: skip

    async def forget(self, services: Services) -> None:
        """Remove the bytes `store` put, when the task was not written after all (best effort:
        bytes no record names are only space)."""
        if self.new_files:
            try:
                await services.storage.delete([f["storage_key"] for f in self.new_files])
            except Exception as exc:
                log.warning(
                    "the bytes of %d image(s) were not removed: %s", len(self.new_files), exc
                )
            self.new_files = []

    def turn_input(self) -> dict[str, Any] | None:
        """The turn's structure as the task and its user message keep it."""
        if self.tool_results:
            return {"tool_results": self.tool_results}
        if self.images:
            return {"images": [i.stored for i in self.images]}
        return None

    def stored_context(self) -> list[dict[str, Any]] | None:
        """The client's context as the task keeps it, its images stored."""
        if self.context is None:
            return None
        return [
            {**m, "images": [i.stored for i in m["images"]]} if m.get("images") else m
            for m in self.context
        ]


def answer_calls(results: Sequence[Mapping[str, Any]], calls: Sequence[Mapping[str, Any]]) -> None:
    """A 400 unless the results answer exactly the pending calls, each once."""
    pending = [str(c["id"]) for c in calls]
    answered = [str(r["tool_call_id"]) for r in results]
    for call_id in answered:
        if call_id not in pending:
            raise InvalidRequest(
                f"tool_call_id {call_id!r} answers no pending tool call; the pending calls are "
                f"{pending}",
                param="tool_call_id",
            )
    if len(set(answered)) != len(answered):
        raise InvalidRequest("a tool call is answered twice", param="tool_call_id")
    missing = [c for c in pending if c not in answered]
    if missing:
        raise InvalidRequest(
            f"the tool calls {missing} have no result: answer every call of the last reply",
            param="tool_call_id",
        )
