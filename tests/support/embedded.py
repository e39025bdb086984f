"""The embedded app (SQLite, in-process queue and worker) driven in-process through httpx's ASGI
transport, and polling its tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from aitasks.api.app import create_app
from aitasks.config import Settings
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from tests.support.flows import TERMINAL

# What the `embedded` fixture gives: `async with embedded(**settings) as client`.
EmbeddedFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a quick embedded app: no mock latency, fast retries, files under `data_dir`,
    and auth off, said outright (an app built without the CLI has auth on unless told)."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "auth": False,
        "mock_latency_ms": 0,
        "max_prompt_chars": 1000,
        "retry_base_seconds": 0.01,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The embedded app on these settings, its schema made, served to an in-process client."""
    async with running_app(settings) as (_, http):
        yield http


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """`running`, and the app itself (for a test that reaches its services)."""
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
        yield app, http


async def finished(client: httpx.AsyncClient, task_id: str, within: float = 10) -> dict[str, Any]:
    return await reaches(client, task_id, TERMINAL, within)


async def reaches(
    client: httpx.AsyncClient, task_id: str, statuses: set[str], within: float = 10
) -> dict[str, Any]:
    """Poll the task until its status is one of `statuses`."""
    async with asyncio.timeout(within):
        while True:
            task: dict[str, Any] = (await client.get(f"/v1/tasks/{task_id}")).json()
            if task["status"] in statuses:
                return task
            await asyncio.sleep(0.01)
