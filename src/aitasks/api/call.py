"""One dependency for the hot routes (a task's poll, a submit): the services, the caller and the
links of a request, resolved in one step.

FastAPI's work per dependency (resolving, caching, calling) was a fifth of a poll's CPU; the three
separate ones plus the bearer declaration cost twice what this one (with that declaration, so the
OpenAPI schema still says how to authenticate) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from aitasks.api.auth import BearerDeclared, authenticate
from aitasks.auth.caller import Caller
from aitasks.links import Links
from aitasks.services import Services


@dataclass(frozen=True, slots=True)
class Call:
    services: Services
    caller: Caller
    links: Links


# The site's root as each (scheme, Host header, server address) reaches it: building it from the
# request's URL cost more than the rest of this dependency. Bounded, as Host is the client's to
# choose; past the bound a root is built each time, as before.
ROOTS_KEPT = 64
_roots: dict[tuple[Any, ...], str] = {}


def _root(request: Request) -> str:
    scope = request.scope
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    key = (scope["scheme"], host, scope.get("server"))
    root = _roots.get(key)
    if root is None:
        root = str(request.url.replace(path="/", query="", fragment=""))
        if len(_roots) < ROOTS_KEPT:
            _roots[key] = root
    return root


async def get_call(request: Request, declared: BearerDeclared = None) -> Call:
    """What `ServicesDep`, `CallerDep` and `LinksDep` give, in one dependency."""
    caller = await authenticate(request, declared)
    services: Services = request.app.state.services
    # As `get_links` makes them: file links signed while auth is on.
    signer = services.file_signer if services.settings.auth_enabled else None
    return Call(services, caller, Links(_root(request), signer, services.store_links))


CallDep = Annotated[Call, Depends(get_call)]
