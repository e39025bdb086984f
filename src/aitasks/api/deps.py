"""Dependencies as typed aliases, so routes read like their signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.links import Links
from aitasks.services import Services


# Dependencies are `async def` even when they await nothing: FastAPI runs a plain `def` one in a
# worker thread, a thread hop per request.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_links(request: Request) -> Links:
    """Links as this caller reached the site; file links signed while auth is on."""
    # The services from the app, not from ServicesDep: each dependency edge costs every request.
    services: Services = request.app.state.services
    root = str(request.url.replace(path="/", query="", fragment=""))
    signer = services.file_signer if services.settings.auth_enabled else None
    return Links(root, signer, services.store_links)


LinksDep = Annotated[Links, Depends(get_links)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.db.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


PreferHeader = Annotated[
    str | None,
    Header(
        alias="Prefer",
        description="`wait=N`: answer when the task finishes, or after N seconds (RFC 7240).",
    ),
]
