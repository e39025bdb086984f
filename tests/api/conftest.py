"""The embedded app (SQLite + in-process queue + worker) driven in-process through httpx, and the
keyed app (auth on) the OpenAI-compatible API's tests drive on either backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aitasks.config import Settings
from tests.support.embedded import EmbeddedFactory, make_settings, running
from tests.support.keyed_app import KeyedAppFactory, keyed_app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings) as http:
        yield http


@pytest.fixture
def embedded(tmp_path: Path) -> EmbeddedFactory:
    """Start the embedded app with settings of the test's own: `async with embedded(**s)`."""
    return lambda **overrides: running(make_settings(tmp_path, **overrides))


@pytest.fixture
def app_on(tmp_path: Path) -> KeyedAppFactory:
    """`async with app_on(mode, **settings) as app`: the keyed app with a worker in one of
    `keyed_app`'s modes, its reconciler every 0.2 s (a cancel or a deadline is seen at once)."""
    return lambda mode, **settings: keyed_app(
        mode, tmp_path, worker=True, **{"reconcile_seconds": 0.2, **settings}
    )
