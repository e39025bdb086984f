"""Every error becomes one JSON shape, in one place: {"error": {"type", "message", "param"}}."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import Match

from aitasks.errors import AITasksError
from aitasks.store.database import is_bad_data, is_unavailable

log = logging.getLogger(__name__)

# What the database layer raises, for a refused value or an outage. Handled by class, not by the
# catch-all, so that Starlette answers and keeps serving (its catch-all handler re-raises, which
# drops the client's connection).
DATABASE_ERRORS = (OSError, TimeoutError, PoolTimeout, DBAPIError)

# Error types for statuses Starlette itself raises (no such route, a body over the cap).
HTTP_ERROR_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}

# How long a client should wait before retrying when a backing service is down.
RETRY_AFTER_SECONDS = 2


def error_body(
    error_type: str, message: str, param: str | None = None, **details: Any
) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message, "param": param, **details}}


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. (Starlette's own 405 names only the methods
    of the first route whose path matched, though others may serve the same path.)"""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AITasksError)
    async def domain_error(_: Request, exc: AITasksError) -> JSONResponse:
        retry_after = exc.retry_after
        if retry_after is None and exc.status_code == 503:
            retry_after = RETRY_AFTER_SECONDS
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

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if is_bad_data(exc):
            # PostgreSQL refused a value (a NUL character, a date out of range): the client's.
            return JSONResponse(
                error_body("invalid_request", "a value in the request cannot be stored"),
                status_code=400,
            )
        if not is_unavailable(exc):
            return unexpected(request, exc)
        log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
        return JSONResponse(
            error_body("service_unavailable", "the database is unavailable; retry shortly"),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    for error_class in DATABASE_ERRORS:
        app.add_exception_handler(error_class, database_error)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        return unexpected(request, exc)


def unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log, never to the client.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "the server hit an unexpected error"), status_code=500
    )
