"""The gateway in-process with auth on, on either backend of the per-key limits, and API keys made
straight in its database: for tests that hit a key's limits with parallel requests (asyncio.gather
through httpx's ASGI transport), where a real process would only add start-up time.

`MODES`: "embedded" (SQLite, the in-process queue, events and limit counters) and "redis"
(PostgreSQL, Redis queue, events and counters, as the distributed deployment runs). Without
`worker=True` no worker runs, so every accepted task stays `PENDING`: in flight for as long as
the test wants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from aitasks.api.app import create_app
from aitasks.config import Settings
from aitasks.services import Services
from aitasks.store import api_keys
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from tests.support.embedded import make_settings
from tests.support.services import REDIS_URL, fresh_postgres_database, fresh_redis_prefix

MODES = ("embedded", "redis")


@dataclass
class KeyedApp:
    http: httpx.AsyncClient
    settings: Settings
    db: Database
    # What the app's process holds (its limit counters among them), once it has started.
    services: Services

    async def key(self, name: str, *, tenant: str | None = None, **limits: int) -> dict[str, str]:
        """A new API key (for `tenant`, by default one of the key's own name) with `limits`
        (max_inflight, daily_tokens, rpm): the headers that present it."""
        async with self.db.session() as session:
            _, secret = await api_keys.create_key(session, name=name, tenant=tenant, **limits)
        return {"Authorization": f"Bearer {secret}"}

    async def stored(self) -> list[int]:
        """How many tasks, messages and conversations are stored: what a refused request must
        leave as it was."""
        return [await self.count(f"SELECT count(*) FROM {table}") for table in STORED]

    async def count(self, sql: str) -> int:
        """One number from the app's database (`SELECT count(*) ...`)."""
        async with self.db.engine.connect() as connection:
            return int((await connection.execute(text(sql))).scalar_one())


# The tables a request writes to.
STORED = ("tasks", "messages", "conversations")
# `keyed_app` with its folder given (tests/api/conftest.py's `app_on`): (mode, **settings).
KeyedAppFactory = Callable[..., AbstractAsyncContextManager[KeyedApp]]


@asynccontextmanager
async def keyed_app(
    mode: str, folder: Path, *, worker: bool = False, **overrides: Any
) -> AsyncIterator[KeyedApp]:
    """The gateway (and, with `worker`, a worker inside it) on `mode`'s backends, auth on."""
    if mode == "embedded":
        settings = make_settings(folder, auth=True, **overrides)
        async with _serving(settings, worker=worker, in_process=True) as app:
            yield app
        return
    with fresh_postgres_database(migrated=True) as database_url, fresh_redis_prefix() as prefix:
        settings = make_settings(
            folder,
            auth=True,
            database_url=database_url,
            redis_url=REDIS_URL,
            redis_prefix=prefix,
            **overrides,
        )
        async with _serving(settings, worker=worker, in_process=False) as app:
            yield app


@asynccontextmanager
async def _serving(
    settings: Settings, *, worker: bool, in_process: bool
) -> AsyncIterator[KeyedApp]:
    db = Database(settings.sqlalchemy_url)
    await upgrade(db)
    app = create_app(settings, embedded=worker, in_process_queue=in_process)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=30
            ) as http,
        ):
            yield KeyedApp(http, settings, db, app.state.services)
    finally:
        await db.dispose()
