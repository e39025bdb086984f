"""Systems running as real processes over real sockets: the service for tests that need only its
URL (`server`, once as `aitasks up` and once distributed, shared by the package's modules), and a
deployment with auth on (`deployment`: two gateways and a worker on PostgreSQL and Redis, keys
made by the CLI)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.deployment import Deployment, secured_deployment
from tests.support.servers import SHAPES, serving


# One of each shape for the whole package, not one per module (each is processes to start and,
# distributed, a database to migrate); its tests make conversations and tasks of their own.
@pytest.fixture(scope="package", params=SHAPES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with serving(request.param, tmp_path_factory.mktemp("server")) as base_url:
        yield base_url


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with secured_deployment(tmp_path_factory.mktemp("secured")) as made:
        yield made
