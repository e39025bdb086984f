"""Real processes to kill: gateways, workers, a Redis of the test's own, a proxy before PostgreSQL.

Every test here ends with a report of what happened to each task it submitted (see
tests/support/faults.py): lost and doubled must be 0.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.faults import FAST_RECOVERY, PROXY, MakeSystem, OwnRedisSystem, System
from tests.support.processes import Background, empty_redis, free_port
from tests.support.services import migrated_env


@pytest.fixture
def redis_server() -> Iterator[Background]:
    """A Redis of the test's own, without persistence, so a restart comes back empty."""
    server = empty_redis()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def postgres_proxy(postgres_url: str) -> Iterator[tuple[Background, str]]:
    """A proxy in front of the test's database, and the URL that goes through it."""
    port = free_port()
    proxy = Background([sys.executable, str(PROXY), str(port), "5432"], port)
    proxy.start()
    yield proxy, make_url(postgres_url).set(port=port).render_as_string(hide_password=False)
    proxy.kill()


@pytest.fixture
def make_system(tmp_path: Path) -> Iterator[MakeSystem]:
    """A migrated database and the environment for `aitasks` processes on it."""
    systems: list[System] = []

    def make(*, database_url: str, redis_url: str, redis_prefix: str, **settings: str) -> System:
        env = migrated_env(
            tmp_path, database_url, redis_url, redis_prefix, **{**FAST_RECOVERY, **settings}
        )
        system = System(tmp_path, database_url, env)
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.stop()


@pytest.fixture
def own_redis_system(
    make_system: MakeSystem, postgres_url: str, redis_prefix: str, redis_server: Background
) -> OwnRedisSystem:
    """`make_system` on the test's database and its own Redis (`redis_server`, to kill)."""

    def make(**settings: str) -> System:
        redis_url = f"redis://127.0.0.1:{redis_server.port}/0"
        return make_system(
            database_url=postgres_url, redis_url=redis_url, redis_prefix=redis_prefix, **settings
        )

    return make
