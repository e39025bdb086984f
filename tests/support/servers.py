"""The service running as processes, for tests that need only its URL: `aitasks up` (SQLite,
in-process queue and events) or distributed (`aitasks api` and `aitasks worker` on PostgreSQL and
Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import Process, free_port, service_env, wait_until_up
from tests.support.services import upgraded_stack

# Long enough that a reply visibly streams, short enough that the tests stay quick.
MOCK_LATENCY_MS = 600
SETTINGS = {
    "AITASKS_MOCK_LATENCY_MS": str(MOCK_LATENCY_MS),
    "AITASKS_SSE_HEARTBEAT_SECONDS": "1",
    "AITASKS_RETRY_BASE_SECONDS": "0.01",
}
SHAPES = ("embedded", "distributed")


@contextmanager
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


@contextmanager
def serving(shape: str, folder: Path) -> Iterator[str]:
    """The service in one of `SHAPES`, with `SETTINGS`; yields its base URL."""
    if shape == "embedded":
        with _serve(["up"], service_env(**SETTINGS), folder, []) as url:
            yield url
        return
    with (
        upgraded_stack(folder, **SETTINGS) as env,
        _serve(["api"], env, folder, [["worker"]]) as url,
    ):
        yield url
