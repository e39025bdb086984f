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

A hot route of a mounted app (the OpenAI surface's chat completions, under /openai) is matched as
the mount and then that app's router would match it, and served through the outer app's error
middleware and user middleware, then the mounted app's own error middleware and exception
handlers (its error shape): what the mount reaches through the mounted app's full stack.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

# What FastAPI puts in the scope of a request it traces (`fastapi.telemetry`): such a request
# takes the full stack, whose telemetry layers see it.
TRACED = "fastapi.telemetry"


async def _to_route(scope: Scope, receive: Receive, send: Send) -> None:
    await scope["route"].handle(scope, receive, send)


def _hot_stack(app: FastAPI, inner: ASGIApp = _to_route, *, handlers: bool = True) -> ASGIApp:
    """The layers of `FastAPI.build_middleware_stack` that act on a plain route's request, with
    the same handlers and user middleware, around `inner` (the matched route). Without
    `handlers`, no exception handlers: what a mounted app's stack (`inner`) raises has been
    answered already (its error middleware answers, then raises again)."""
    error_handler = None
    by_class = {}
    for key, value in app.exception_handlers.items():
        if key in (500, Exception):
            error_handler = value
        else:
            by_class[key] = value
    stack = ExceptionMiddleware(inner, handlers=by_class, debug=app.debug) if handlers else inner
    for middleware in reversed(app.user_middleware):
        stack = middleware.cls(stack, *middleware.args, **middleware.kwargs)
    return ServerErrorMiddleware(stack, handler=error_handler, debug=app.debug)


class _Mounted:
    """Hot routes of the app `mount` mounts, and the stack they are served through."""

    def __init__(self, outer: FastAPI, mount: Mount, routes: Sequence[BaseRoute]) -> None:
        assert isinstance(mount.app, FastAPI), "a mounted FastAPI app's routes"
        self.mount, self.app, self.routes = mount, mount.app, tuple(routes)
        self.stack = _hot_stack(outer, _hot_stack(mount.app), handlers=False)

    def enter(self, scope: Scope) -> bool:
        """Whether one of the routes matches; if so, `scope` is made what the mount, the mounted
        app and its router make it."""
        match, mount_scope = self.mount.matches(scope)
        if match is not Match.FULL:
            return False
        inner = {**scope, **mount_scope}
        for route in self.routes:
            match, child_scope = route.matches(inner)
            if match is Match.FULL:
                scope.update(mount_scope)
                scope["app"] = self.app
                scope["route"] = route
                scope.update(child_scope)
                return True
        return False


class FrontDoor:
    """The app's middleware stack, with `routes` (and `mounted`: a mount and hot routes of the
    app it mounts) served through `_hot_stack` ahead of it."""

    def __init__(
        self,
        app: FastAPI,
        routes: Sequence[BaseRoute],
        mounted: Sequence[tuple[Mount, Sequence[BaseRoute]]] = (),
    ) -> None:
        self.router = app.router
        self.routes = tuple(routes)
        self.mounted = tuple(_Mounted(app, mount, hot) for mount, hot in mounted)
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
            for mounted in self.mounted:
                if mounted.enter(scope):
                    scope.setdefault("router", self.router)
                    await mounted.stack(scope, receive, send)
                    return
        await self.full(scope, receive, send)


def open_front_door(
    app: FastAPI,
    routes: Sequence[BaseRoute],
    mounted: Sequence[tuple[Mount, Sequence[BaseRoute]]] = (),
) -> None:
    """Serve `routes` (plain routes, which also stand in the app's router) and `mounted` (a mount
    of the app's router, and plain routes standing in its app's router) through a front door.
    Call it last: the app takes no middleware once its stack is built."""
    app.middleware_stack = FrontDoor(app, routes, mounted)
