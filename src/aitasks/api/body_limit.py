"""A cap on request bodies (`AITASKS_MAX_BODY_BYTES`), applied before anything reads them: a
declared `Content-Length` over the cap is refused at once, and a body sent without one is
counted as it arrives and refused when it passes the cap."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_message(limit: int) -> str:
    return f"the request body is over the limit of {limit} bytes (AITASKS_MAX_BODY_BYTES)"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # Raised inside the app: its HTTPException handler answers 413 in its own shape.
                raise HTTPException(413, too_large_message(self.max_bytes))
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = too_large_message(self.max_bytes)
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
