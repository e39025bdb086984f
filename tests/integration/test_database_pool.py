"""The pool hands out live connections after PostgreSQL dropped idle ones (a restart, a proxy)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from aitasks.config import async_database_url
from aitasks.store import database
from aitasks.store.database import Database


async def backend_pid(db: Database) -> int:
    async with db.engine.connect() as connection:
        pid: int = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


def terminate(postgres_url: str, pid: int) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_an_idle_connection_killed_by_the_server_is_replaced_before_use(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(async_database_url(postgres_url), pool_size=1)
    try:
        dead = await backend_pid(db)
        terminate(postgres_url, dead)
        monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
        # The idle connection is pinged, found dead and replaced: the caller sees no error.
        assert await backend_pid(db) != dead
    finally:
        await db.dispose()
