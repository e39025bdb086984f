"""Errors in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with the statuses that
make the official SDK raise its matching exception (404 NotFoundError, 429 RateLimitError, ...)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from aitasks.api.error_handlers import (
    HTTP_ERROR_TYPES,
    http_error_headers,
    install_database_handler,
    retry_after_of,
    validation_problem,
)
from aitasks.errors import AITasksError, IdempotencyKeyReused, UnknownModel, ValueRefused

log = logging.getLogger(__name__)

# OpenAI's error types, by HTTP status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(
    status: int, message: str, *, code: str | None, param: str | None = None, **headers: str
) -> JSONResponse:
    """An error as OpenAI answers it. Pass `x_should_retry="false"` where a retry by the SDK
    would submit the work again (its default is to retry 409, 429 and 5xx twice)."""
    headers = {k.replace("_", "-"): v for k, v in headers.items()}
    body: dict[str, Any] = {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error"),
            "param": param,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers or None)


def install_openai_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AITasksError)
    async def domain_error(_: Request, exc: AITasksError) -> JSONResponse:
        status = exc.status_code
        code = exc.error_type
        if isinstance(exc, UnknownModel):
            status, code = 404, "model_not_found"  # what OpenAI answers, and the SDK expects
        elif isinstance(exc, ValueRefused):
            code = "bad_value"
        elif status == 422 and not isinstance(exc, IdempotencyKeyReused):
            # (A reused Idempotency-Key stays a 422, as on the seed API: the SDK does not retry
            # it, and it says the request, not its syntax, is the trouble.)
            status = 400
        retry_after = retry_after_of(exc)
        headers = {"Retry-After": str(int(retry_after))} if retry_after else {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return openai_error(status, exc.message, code=code, param=exc.param, **headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        error_type, message, param = validation_problem(exc)
        return openai_error(400, message, code=error_type, param=param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_ERROR_TYPES.get(exc.status_code)
        headers = http_error_headers(request, exc)
        return openai_error(exc.status_code, str(exc.detail), code=code, **headers)

    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        """Answer by type: one of ours in OpenAI's shape, anything else as a 500."""
        if isinstance(exc, AITasksError):
            return await domain_error(request, exc)
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return openai_error(500, "the server hit an unexpected error", code="internal_error")

    install_database_handler(app, any_error)
    # Anything else in OpenAI's shape too (Starlette's own answer is a plain-text 500).
    app.add_exception_handler(Exception, any_error)
