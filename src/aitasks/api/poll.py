"""A task's poll (`GET /v1/tasks/{task_id}`), the request clients send most, served by a plain
Starlette route placed ahead of FastAPI's routing.

FastAPI's per-request work (walking the included routers, solving the dependencies, reading the
parameters into models) was half of a poll's CPU. The FastAPI route in `routes/tasks.py` stays:
it documents the call in the OpenAPI schema and shares `answer` with this one. Everything around
the route is unchanged: the middleware, the exception handlers (so every error keeps its shape)
and FastAPI's request span, which names the same `http.route`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from aitasks import lifecycle, telemetry
from aitasks.api.call import Call, get_call
from aitasks.api.live import preferred_wait, wait_for_task
from aitasks.api.responses import json_response
from aitasks.views import task_view


async def answer(call: Call, task_id: str, prefer: str | None) -> Response:
    """The tenant's task as JSON; with `Prefer: wait=N`, once it finishes or after N seconds."""
    services, caller = call.services, call.caller
    # A short session of its own: a wait must not hold a pooled connection while it waits.
    wait = preferred_wait(prefer, services.settings.max_wait_seconds)
    if wait is None:
        task = await lifecycle.read_task(services, task_id, tenant=caller.tenant)
    else:
        # Loads it first: 404 at once.
        task = await wait_for_task(services, task_id, wait, tenant=caller.tenant)
        # This request waited on the task's work: a link to its trace, not a parent.
        telemetry.current().link(task.trace_context, {"aitasks.link": "wait"})
    return json_response(task_view(task, call.links))


async def poll(request: Request) -> Response:
    """What the FastAPI route answers, with its parameters read by hand: the path's `task_id`
    and the first `Prefer` header, as FastAPI reads a single-valued header."""
    call = await get_call(request)
    return await answer(call, request.path_params["task_id"], request.headers.get("prefer"))


class PollRoute(Route):
    """Matches GET only. Any other method passes on to the routes behind it, which answer it
    (a 405, with its `Allow`) exactly as they did before this route stood in front."""

    def __init__(self, path: str) -> None:
        super().__init__(path, poll, methods=["GET"], name="poll_task", include_in_schema=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        return super().matches(scope)


def serve_polls_first(app: FastAPI, path: str) -> PollRoute:
    """Put the poll's route at `path` ahead of every other route of `app`; returns it."""
    routes: list[Any] = app.router.routes
    route = PollRoute(path)
    routes.insert(0, route)
    return route
