"""Every error becomes one JSON shape, in one place: {"error": {"type", "message", "param"}}."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from aitasks.errors import AITasksError, DatabaseUnavailable
from aitasks.store.database import DRIVER_ERRORS, translated

log = logging.getLogger(__name__)

# Error types for statuses Starlette itself raises (no such route, a body over the cap).
HTTP_ERROR_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}

# How long a client should wait before retrying when a backing service is down.
RETRY_AFTER_SECONDS = 2


def error_body(
    error_type: str, message: str, param: str | None = None, **details: Any
) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message, "param": param, **details}}


# The methods a 405's Allow header may name.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path, found by asking the routes whether each
    method would fully match: routers included into the app are routes of their own (FastAPI
    keeps them unexpanded), and Starlette's own 405 names only the methods of the first route
    whose path matched, though others may serve the same path."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


def http_error_headers(request: Request, exc: HTTPException) -> dict[str, str]:
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return headers


def validation_problem(exc: RequestValidationError) -> tuple[str, str, str | None]:
    """(type, message, param) for the first problem FastAPI found in the request."""
    errors = exc.errors()
    first: dict[str, Any] = (
        dict(errors[0]) if errors else {"type": "invalid", "msg": "invalid request", "loc": ()}
    )
    if first["type"] == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return "invalid_json", f"the body is not valid JSON: {reason}".rstrip(": "), None
    location = [str(part) for part in first["loc"] if part != "body"]
    param = ".".join(location) or None
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "field required"
    elif first["type"] == "model_attributes_type" or (not location and "dict" in message):
        message = "the body must be a JSON object"
    return "invalid_request", f"{param}: {message}" if param else message, param


def retry_after_of(exc: AITasksError) -> float | None:
    """Seconds a client should wait before trying again: the error's own, else a short default
    for a backing service that is down (503)."""
    if exc.retry_after is None and exc.status_code == 503:
        return RETRY_AFTER_SECONDS
    return exc.retry_after


def install_database_handler(
    app: FastAPI, answer: Callable[[Request, Exception], Awaitable[JSONResponse]]
) -> None:
    """Answer a driver's error that escaped outside a session (where the database boundary did
    not see it) as the error it means: translated by `store.database.translated`, then answered
    by type through the surface's `answer` (ours in its shape, anything else a 500). Registered
    by class, not left to the catch-all, so that Starlette answers and keeps serving (its
    catch-all handler re-raises, which drops the client's connection)."""

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        error = translated(exc)
        if isinstance(error, DatabaseUnavailable):
            log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
        return await answer(request, error if isinstance(error, AITasksError) else exc)

    for error_class in DRIVER_ERRORS:
        app.add_exception_handler(error_class, database_error)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AITasksError)
    async def domain_error(_: Request, exc: AITasksError) -> JSONResponse:
        retry_after = retry_after_of(exc)
        headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        body = error_body(exc.error_type, exc.message, exc.param, **exc.details)
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        error_type, message, param = validation_problem(exc)
        status = 400 if error_type == "invalid_json" else 422
        return JSONResponse(error_body(error_type, message, param), status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        error_type = HTTP_ERROR_TYPES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(error_type, str(exc.detail)),
            status_code=exc.status_code,
            headers=http_error_headers(request, exc) or None,
        )

    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        """Answer by type: one of ours in its shape, anything else as a 500."""
        if isinstance(exc, AITasksError):
            return await domain_error(request, exc)
        return unexpected(request, exc)

    install_database_handler(app, any_error)
    app.add_exception_handler(Exception, any_error)


def unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log, never to the client.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "the server hit an unexpected error"), status_code=500
    )
