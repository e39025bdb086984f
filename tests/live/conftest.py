"""One `aitasks up` process for the tests of streams, waits and the OpenAI-compatible surface."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Process, free_port, service_env, wait_until_up

# Long enough that a reply visibly streams, short enough that the tests stay quick.
MOCK_LATENCY_MS = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("live")
    port = free_port()
    process = Process(
        ["up", "--port", str(port)],
        service_env(
            AITASKS_MOCK_LATENCY_MS=str(MOCK_LATENCY_MS),
            AITASKS_SSE_HEARTBEAT_SECONDS="1",
            AITASKS_RETRY_BASE_SECONDS="0.01",
        ),
        folder,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base_url, process)
        yield base_url
    finally:
        process.stop()
