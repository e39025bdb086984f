"""The embedded app (SQLite + in-process queue + worker) driven in-process through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aitasks.config import Settings
from tests.support.embedded import EmbeddedFactory, make_settings, running


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
