"""`aitasks up`: the whole system in one process on SQLite and the in-process queue."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.flows import (
    bad_input_changes_nothing,
    conversation_with_history_and_an_image,
    submit,
    wait_for_tasks,
)
from tests.support.processes import Process, free_port, service_env, wait_until_up


@contextmanager
def running_up(
    folder: Path, port: int | None = None, **settings: str
) -> Iterator[tuple[httpx.Client, Process]]:
    port = port or free_port()
    # No DATABASE_URL, no REDIS_URL: the embedded default, data kept under the working directory.
    process = Process(["up", "--port", str(port)], service_env(**settings), folder)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base_url, process)
        with httpx.Client(base_url=base_url, timeout=10) as client:
            yield client, process
    finally:
        process.stop()


def test_seed_flows_and_history_surviving_a_restart(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / '.aitasks' / 'aitasks.db'}"
    port = free_port()
    with running_up(tmp_path, port) as (client, process):
        conversation = conversation_with_history_and_an_image(client)
        bad_input_changes_nothing(client, database_url)
        history = client.get(f"/v1/conversations/{conversation}/history").json()
        assert "in-process queue" in process.log()

    with running_up(tmp_path, port) as (client, _):
        assert client.get(f"/v1/conversations/{conversation}/history").json() == history
        (image_url,) = history["messages"][5]["images"]
        assert client.get(image_url).headers["content-type"] == "image/png"
        follow_up = submit(client, "still there?", conversation)
        reply = wait_for_tasks(client, [follow_up["task_id"]])[follow_up["task_id"]]
        assert "4 earlier turns" in reply["result"]


def test_work_in_flight_when_killed_is_run_after_a_restart(tmp_path: Path) -> None:
    slow = {"AITASKS_MOCK_LATENCY_MS": "3000", "AITASKS_LEASE_SECONDS": "1"}
    with running_up(tmp_path, **slow) as (client, process):
        accepted = [submit(client, f"question {n}") for n in range(5)]
        process.stop(signal.SIGKILL)

    with running_up(tmp_path, AITASKS_MOCK_LATENCY_MS="10") as (client, process):
        ids = [a["task_id"] for a in accepted]
        finished = wait_for_tasks(client, ids, timeout=30)
        assert {t["status"] for t in finished.values()} == {"SUCCESS"}
        # All five at start-up, or (when the restart beat the old 1 s leases) over two passes.
        republished = re.findall(r"republished (\d+) task\(s\)", process.log())
        assert sum(int(n) for n in republished) == 5, republished
