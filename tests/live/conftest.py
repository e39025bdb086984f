"""The service, running, for the tests of streams, waits and the OpenAI-compatible surface: once as
`aitasks up` (SQLite, in-process queue and events), once distributed (`aitasks api` and `aitasks
worker` on PostgreSQL and Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import upgraded_stack
from tests.helpers import Process, free_port, service_env, wait_until_up

# Long enough that a reply visibly streams, short enough that the tests stay quick.
MOCK_LATENCY_MS = 600
SETTINGS = {
    "AITASKS_MOCK_LATENCY_MS": str(MOCK_LATENCY_MS),
    "AITASKS_SSE_HEARTBEAT_SECONDS": "1",
    "AITASKS_RETRY_BASE_SECONDS": "0.01",
}


def _serve(
    args: list[str], env: dict[str, str], folder: Path, extra: list[list[str]]
) -> Iterator[str]:
    port = free_port()
    processes = [Process([*args, "--port", str(port)], env, folder)]
    processes += [Process(more, env, folder) for more in extra]
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base_url, processes[0])
        for process in processes[1:]:
            process.wait_for_log("on queues")
        yield base_url
    finally:
        for process in processes:
            process.stop()


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("live")
    if request.param == "embedded":
        yield from _serve(["up"], service_env(**SETTINGS), folder, [])
        return
    with upgraded_stack(folder, **SETTINGS) as env:
        yield from _serve(["api"], env, folder, [["worker"]])
