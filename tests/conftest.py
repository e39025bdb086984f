"""Fixtures for real services: a fresh PostgreSQL database and a fresh Redis key prefix per test,
and one Redis Cluster for the session. What they are built from is in tests/support.

A service that is down fails the test, never skips it: the suite is meant to prove the real thing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import PROVIDER_VARIABLES
from tests.support.redis_cluster import Cluster, running_cluster
from tests.support.s3_server import S3Server, running_s3_server
from tests.support.services import fresh_postgres_database, fresh_redis_prefix, shared_databases


@pytest.fixture(scope="session", autouse=True)
def databases() -> Iterator[None]:
    """The session's migrated template and the thread that drops each test's database."""
    with shared_databases():
        yield


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def migrated_postgres_url() -> Iterator[str]:
    """A new PostgreSQL database for this test, its schema at the migrations' head."""
    with fresh_postgres_database(migrated=True) as url:
        yield url


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix for this test alone."""
    with fresh_redis_prefix() as prefix:
        yield prefix


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three Redis Cluster nodes on loopback, started once, when a test first asks for them."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def cluster_prefix(redis_cluster: Cluster) -> Iterator[str]:
    """A key prefix on the Redis Cluster for this test alone."""
    with redis_cluster.fresh_prefix() as prefix:
        yield prefix


@pytest.fixture(autouse=True)
def no_real_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real provider, whatever keys the developer's shell holds."""
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3-compatible server on loopback, started once, when a test first asks for it."""
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS variables pointing at the suite's S3 server, set for this test, and a
    fresh bucket on it: `{"bucket": name, **variables}`."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return {"bucket": s3_server.new_bucket(), **s3_server.env()}
