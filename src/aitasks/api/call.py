"""One dependency for the hot routes (a task's poll, a submit): the services, the caller and the
links of a request, resolved in one step.

FastAPI's work per dependency (resolving, caching, calling) was a fifth of a poll's CPU; the three
separate ones plus the bearer declaration cost twice what this one (with that declaration, so the
OpenAPI schema still says how to authenticate) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from aitasks.api.auth import BearerDeclared, authenticate
from aitasks.api.deps import get_links
from aitasks.auth.caller import Caller
from aitasks.links import Links
from aitasks.services import Services


@dataclass(frozen=True, slots=True)
class Call:
    services: Services
    caller: Caller
    links: Links


async def get_call(request: Request, declared: BearerDeclared = None) -> Call:
    """What `ServicesDep`, `CallerDep` and `LinksDep` give, in one dependency."""
    caller = await authenticate(request, declared)
    return Call(request.app.state.services, caller, await get_links(request))


CallDep = Annotated[Call, Depends(get_call)]
