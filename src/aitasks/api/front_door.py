"""The hot routes' way in: the poll and the submits (`api/poll.py`, `api/submit_route.py`) reach
their route through only the layers that act on them.

FastAPI's stack around every route is: its error middleware (our 500), its exception telemetry,
its own body limit, our `BodySizeLimit`, the exception handlers, an exit stack for its routes'
files, then the router's walk over the routes. For the hot routes, with FastAPI's telemetry off,
three of those do nothing (the telemetry records nothing, FastAPI's body limit is unset, the exit
stack closes nothing: they are plain routes) and the router's walk costs more than matching the
few hot routes first; together that was a tenth of a poll's CPU in the app. So the app's stack
is wrapped: a request one of the hot routes matches goes through the same error middleware, the
same user middleware and the same exception handlers, built as FastAPI builds them, straight to
its route; every other request, and every request FastAPI traces, goes through the full stack.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

# What FastAPI puts in the scope of a request it traces (`fastapi.telemetry`): such a request
# takes the full stack, whose telemetry layers see it.
TRACED = "fastapi.telemetry"


async def _to_route(scope: Scope, receive: Receive, send: Send) -> None:
    await scope["route"].handle(scope, receive, send)


def _hot_stack(app: FastAPI) -> ASGIApp:
    """The layers of `FastAPI.build_middleware_stack` that act on a plain route's request, with
    the same handlers and user middleware, around the matched route."""
    error_handler = None
    handlers = {}
    for key, value in app.exception_handlers.items():
        if key in (500, Exception):
            error_handler = value
        else:
            handlers[key] = value
    stack: ASGIApp = ExceptionMiddleware(_to_route, handlers=handlers, debug=app.debug)
    for middleware in reversed(app.user_middleware):
        stack = middleware.cls(stack, *middleware.args, **middleware.kwargs)
    return ServerErrorMiddleware(stack, handler=error_handler, debug=app.debug)


class FrontDoor:
    """The app's middleware stack, with `routes` served through `_hot_stack` ahead of it."""

    def __init__(self, app: FastAPI, routes: Sequence[BaseRoute]) -> None:
        self.router = app.router
        self.routes = tuple(routes)
        self.full = app.build_middleware_stack()
        self.hot = _hot_stack(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and TRACED not in scope:
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    # What the router sets before it hands a request to its route.
                    scope.setdefault("router", self.router)
                    scope["route"] = route
                    scope.update(child_scope)
                    await self.hot(scope, receive, send)
                    return
        await self.full(scope, receive, send)


def open_front_door(app: FastAPI, routes: Sequence[BaseRoute]) -> None:
    """Serve `routes` (plain routes, which also stand in the app's router) through a front door.
    Call it last: the app takes no middleware once its stack is built."""
    app.middleware_stack = FrontDoor(app, routes)
