"""The embedded app (SQLite + in-process queue + worker) driven in-process through httpx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aitasks.api.app import create_app
from aitasks.config import Settings
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from tests.helpers import TERMINAL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        mock_latency_ms=0,
        max_prompt_chars=1000,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    db = Database(settings.sqlalchemy_url)
    await upgrade(db)
    await db.dispose()
    app = create_app(settings, embedded=True)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http,
    ):
        yield http


async def finished(client: httpx.AsyncClient, task_id: str, within: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            task: dict[str, Any] = (await client.get(f"/v1/tasks/{task_id}")).json()
            if task["status"] in TERMINAL:
                return task
            await asyncio.sleep(0.01)
