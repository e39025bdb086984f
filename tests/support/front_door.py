"""For tests that compare the hot routes (`api/front_door.py`, `api/submit_route.py`) with the
app's full stack: that stack alone, and the bodies the plain routes hand on to FastAPI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI

from aitasks.api import submit_route
from aitasks.api.front_door import FrontDoor


@contextmanager
def full_stack(app: FastAPI) -> Iterator[None]:
    """The app's full stack, no front door (the way a traced request goes)."""
    door = app.middleware_stack
    assert isinstance(door, FrontDoor)
    app.middleware_stack = door.full
    try:
        yield
    finally:
        app.middleware_stack = door


def handed_on_bodies(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the plain submit routes hand on to FastAPI's, listed as they go."""
    handed_on: list[bytes] = []
    hand_on = submit_route._hand_on

    async def counted(router: Any, scope: Any, receive: Any, send: Any, body: bytes) -> None:
        handed_on.append(body)
        await hand_on(router, scope, receive, send, body)

    monkeypatch.setattr(submit_route, "_hand_on", counted)
    return handed_on
