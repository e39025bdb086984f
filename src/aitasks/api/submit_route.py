"""The submits, every task's first request (the seed's `POST /v1/chat/completions` and
`POST /v1/images/generations`, and the OpenAI surface's `POST /openai/v1/chat/completions`), served
by a plain Starlette route placed ahead of FastAPI's routing when the request is well-formed;
anything else is handed on to FastAPI's route, as if this one were not there.

FastAPI's per-request work (its two exit stacks, solving the dependencies, reading the headers and
the body into models, each step timed for its telemetry) was a third of a submit's CPU. This route
reads the body as FastAPI does (JSON by the same `json.loads`, for the same content types) and
validates it with the same model; only when the body and the headers would pass FastAPI's checks
does it answer by itself, through the very function FastAPI's route calls (`routes/submit.py`,
`openai/routes.py`), so the key, the limits and every answer are the same. A request that FastAPI
would refuse (malformed JSON, a missing or invalid field, another content type, an
`Idempotency-Key` over its length) is answered by FastAPI's own route, with the body read here
handed to it again: every 400 and 422 keeps its bytes, in its app's error shape. The FastAPI
routes stay, for the OpenAPI schema and those answers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from pydantic import BaseModel
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aitasks.api.call import get_call
from aitasks.api.routes import submit
from aitasks.api.schemas import ChatSubmitRequest, SubmitRequest

# A scope handed on to the routes behind: this route does not match it a second time.
HANDED_ON = "aitasks.submit_route.handed_on"
# What FastAPI's routes find their files' exit stack by (`AsyncExitStackMiddleware` sets it).
FASTAPI_FILES_STACK = "fastapi_middleware_astack"
# The content types FastAPI surely reads as JSON; others (`+json`, parameters) are left to it.
JSON_CONTENT_TYPES = frozenset({"application/json"})
# FastAPI's `Idempotency-Key` header declaration (`routes/submit.IdempotencyKey`): its length.
IDEMPOTENCY_KEY_MAX = 200

# What a route answers a well-formed request with: (call, body, Idempotency-Key, *its headers').
Answer = Callable[..., Awaitable[Response]]


async def _body(request: Request) -> bytes:
    """The body, read as FastAPI reads it: its limit's 413 raised as it is, any other failure
    (the client gone mid-body) its 400."""
    try:
        return await request.body()
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(400, "There was an error parsing the body") from exc


def _one_header(scope: Scope, name: bytes) -> str | None:
    """The first header called `name` (lower case), as Starlette's `Headers.get` gives it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _served_by_handle(_request: Request) -> Response:  # pragma: no cover
    raise NotImplementedError("SubmitRoute.handle serves its requests")


class SubmitRoute(Route):
    """Matches POST only (other methods pass on to the routes behind, for their 405s), and no
    scope it handed on itself. A well-formed request is answered by `answer(call, body,
    idempotency_key, *values)`, the values those of `headers` (lower-case names; None when
    absent); the rest is handed on to `router`, the router it stands first in."""

    def __init__(
        self,
        path: str,
        name: str,
        model: type[BaseModel],
        answer: Answer,
        *,
        router: ASGIApp,
        headers: tuple[bytes, ...] = (),
    ) -> None:
        super().__init__(
            path, _served_by_handle, methods=["POST"], name=name, include_in_schema=False
        )
        self.model, self.answer, self.router, self.headers = model, answer, router, headers

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST" or HANDED_ON in scope:
            return Match.NONE, {}
        return super().matches(scope)

    def _well_formed(self, scope: Scope, body: bytes) -> tuple[Any, str | None] | None:
        """The validated body and the `Idempotency-Key`, when FastAPI would accept both; None
        when it would refuse either (it answers those itself)."""
        content_type = _one_header(scope, b"content-type")
        if not body or content_type not in JSON_CONTENT_TYPES:
            return None
        key = _one_header(scope, b"idempotency-key")
        if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
            return None
        try:
            # As FastAPI reads it: Starlette's `Request.json`, then the model, from attributes.
            return self.model.model_validate(json.loads(body), from_attributes=True), key
        except Exception:  # FastAPI answers it: a 400, a 422, or its own error
            return None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        handed_on: bytes | None = None

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal handed_on
            body = await _body(request)
            submission = self._well_formed(scope, body)
            if submission is None:
                handed_on = body
                return
            call = await get_call(request)
            values = [_one_header(scope, name) for name in self.headers]
            response = await self.answer(call, submission[0], submission[1], *values)
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(app, request)(scope, receive, send)
        if handed_on is not None:
            await _hand_on(self.router, scope, receive, send, handed_on)


async def _hand_on(
    router: ASGIApp, scope: Scope, receive: Receive, send: Send, body: bytes
) -> None:
    """Route the request again through `router`, as if this route were not there, its body read
    once more. (Not `scope["router"]`: in a mounted app that is the outer app's router.)"""
    replayed = False

    async def receive_again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    scope[HANDED_ON] = True
    if FASTAPI_FILES_STACK not in scope:
        # Come through the front door (`api/front_door.py`), which a FastAPI route needs this for.
        router = AsyncExitStackMiddleware(router)
    await router(scope, receive_again, send)


def serve_submits_first(app: FastAPI) -> list[SubmitRoute]:
    """Put the submits' routes ahead of every other route of `app`; returns them."""
    prefix, router, prefer = submit.router.prefix, app.router, (b"prefer",)
    chat = SubmitRoute(prefix + submit.CHAT_PATH, "chat_submit", ChatSubmitRequest,
                       submit.submit_chat, router=router, headers=prefer)  # fmt: skip
    image = SubmitRoute(prefix + submit.IMAGE_PATH, "image_submit", SubmitRequest,
                        submit.submit_image, router=router, headers=prefer)  # fmt: skip
    return serve_first(app, [chat, image])


def serve_first(app: FastAPI, routes: list[SubmitRoute]) -> list[SubmitRoute]:
    """Put `routes` ahead of every other route of `app`; returns them."""
    app.router.routes[0:0] = routes
    return routes
