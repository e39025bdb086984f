"""The error answers each route may give, for the OpenAPI schema: all in the one error shape; and
answers serialized straight from their model."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel

from aitasks.api.schemas import ErrorBody

WHY = {
    400: "The request is malformed, or names an unknown model, cursor or kind.",
    401: "No API key, or not a valid one (while auth is on).",
    404: "No such resource, or not the caller's.",
    409: "The resource's state does not allow it.",
    413: "Over an input limit (the message names the setting).",
    415: "Not an image (PNG, JPEG, GIF or WebP).",
    422: "A field is missing or invalid, or over a limit.",
    429: "Over a limit of the key or of the queue; see Retry-After.",
    503: "The database or the queue is unreachable; see Retry-After.",
}
# What any call that needs a key may answer: refused, invalid, limited, or a service down.
COMMON = (401, 422, 429, 503)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that may answer these statuses besides the common ones."""
    return {
        status: {"model": ErrorBody, "description": WHY[status]}
        for status in sorted({*COMMON, *statuses})
    }


def json_response(view: BaseModel, status_code: int = 200) -> Response:
    """`view` as JSON, serialized once by pydantic. Returning the model instead would have FastAPI
    dump it, validate the dump against the route's response model and serialize that: three
    passes for what one does, on routes (a task's poll) that run all the time."""
    return Response(view.model_dump_json(), status_code, media_type="application/json")
