"""A cap on request bodies (`AITASKS_MAX_BODY_BYTES`; an image upload's, `POST /v1/files`, by
`AITASKS_MAX_IMAGE_BYTES` and a little for the multipart framing; a batch's, `POST /v1/batches`
and its input file `POST /openai/v1/files`, by `AITASKS_MAX_BATCH_BYTES`), applied before anything
reads them: a declared `Content-Length` over the cap is refused at once, and a body sent without
one is counted as it arrives and refused when it passes the cap."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Room for an upload's multipart framing (boundaries, part headers) beside the image itself.
UPLOAD_FRAMING_BYTES = 16 * 1024
UPLOAD_PATH = "/v1/files"
# What a batch is sent by: the seed's JSON, and an OpenAI batch's input file.
BATCH_PATHS = frozenset({"/v1/batches", "/openai/v1/files"})


def too_large_message(limit: int, setting: str = "AITASKS_MAX_BODY_BYTES") -> str:
    return f"the request body is over the limit of {limit} bytes ({setting})"


class BodySizeLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        upload_bytes: int | None = None,
        batch_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes
        self.batch_bytes = batch_bytes

    def _limit(self, scope: Scope) -> tuple[int, str]:
        """The cap for this request, and the setting that makes it."""
        if self.upload_bytes and scope.get("method") == "POST" and scope["path"] == UPLOAD_PATH:
            return self.upload_bytes + UPLOAD_FRAMING_BYTES, "AITASKS_MAX_IMAGE_BYTES"
        if self.batch_bytes and scope.get("method") == "POST" and scope["path"] in BATCH_PATHS:
            return self.batch_bytes + UPLOAD_FRAMING_BYTES, "AITASKS_MAX_BATCH_BYTES"
        return self.max_bytes, "AITASKS_MAX_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(scope, send, too_large_message(limit, setting))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                # Raised inside the app: its HTTPException handler answers 413 in its own shape.
                raise HTTPException(413, too_large_message(limit, setting))
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, send: Send, message: str) -> None:
        error: dict[str, object] = {"type": "payload_too_large", "message": message, "param": None}
        if str(scope.get("path", "")).startswith("/openai/"):
            error = {"message": message, "type": "invalid_request_error", "param": None,
                     "code": "payload_too_large"}  # fmt: skip
        body = json.dumps({"error": error}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
