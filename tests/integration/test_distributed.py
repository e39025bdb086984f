"""The distributed system as an operator runs it: `aitasks db upgrade`, one gateway and two
workers as real processes, on real PostgreSQL and Redis, driven over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.flows import (
    bad_input_changes_nothing,
    conversation_with_history_and_an_image,
    submit,
    wait_for_tasks,
)
from tests.support.processes import Process, free_port, run_cli, service_env, wait_until_up
from tests.support.services import (
    REDIS_URL,
    fresh_postgres_database,
    fresh_redis_prefix,
    query,
    row_counts,
)
from tests.support.sse import read_events


@dataclass
class Distributed:
    client: httpx.Client
    database_url: str
    workers: list[Process]
    env: dict[str, str]
    folder: Path


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distributed]:
    folder = tmp_path_factory.mktemp("distributed")
    with fresh_postgres_database() as database_url, fresh_redis_prefix() as prefix:
        env = service_env(
            DATABASE_URL=database_url,  # the plain postgresql:// form an operator writes
            REDIS_URL=REDIS_URL,
            AITASKS_REDIS_PREFIX=prefix,
            AITASKS_DATA_DIR=str(folder / "data"),
            AITASKS_MOCK_LATENCY_MS="20",
        )
        upgraded = run_cli(["db", "upgrade"], env, folder)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "Upgraded the database schema" in upgraded.stdout
        again = run_cli(["db", "upgrade"], env, folder)
        assert "up to date" in again.stdout

        port = free_port()
        gateway = Process(["api", "--port", str(port)], env, folder)
        workers = [Process(["worker", "--concurrency", "8"], env, folder) for _ in range(2)]
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base_url, gateway)
            with httpx.Client(base_url=base_url, timeout=10) as client:
                yield Distributed(client, database_url, workers, env, folder)
        finally:
            for process in (gateway, *workers):
                process.stop()


def test_the_seed_flows(distributed: Distributed) -> None:
    conversation_with_history_and_an_image(distributed.client)


def test_bad_input_is_refused_and_nothing_is_written(distributed: Distributed) -> None:
    bad_input_changes_nothing(distributed.client, distributed.database_url)


def test_the_seed_variables_configure_the_same_system(
    distributed: Distributed, tmp_path: Path
) -> None:
    url = httpx.URL(distributed.database_url)
    env = service_env(
        DB_HOST=url.host, DB_PORT=str(url.port), POSTGRES_DB=url.path.lstrip("/"),
        POSTGRES_USER="postgres", REDIS_HOST="127.0.0.1", REDIS_PORT="6379",
    )  # fmt: skip
    current = run_cli(["db", "current"], env, tmp_path)
    assert current.returncode == 0, current.stderr
    assert "up to date" in current.stdout


def test_two_workers_share_200_tasks_each_run_exactly_once(distributed: Distributed) -> None:
    client = distributed.client
    # 20 conversations of 10 turns, submitted all at once: workers race for them, and turns of one
    # conversation must still run in order, each seeing every reply before it.
    firsts = [submit(client, "turn 1") for _ in range(20)]

    def rest_of(first: dict[str, str]) -> list[dict[str, str]]:
        conversation = first["conversation_id"]
        return [first] + [submit(client, f"turn {n}", conversation) for n in range(2, 11)]

    with ThreadPoolExecutor(8) as pool:
        conversations = list(pool.map(rest_of, firsts))
    task_ids = [t["task_id"] for turns in conversations for t in turns]
    assert len(set(task_ids)) == 200

    finished = wait_for_tasks(client, task_ids, timeout=120)
    assert {t["status"] for t in finished.values()} == {"SUCCESS"}
    assert {t["attempts"] for t in finished.values()} == {1}  # claimed, hence run, once
    for turns in conversations:
        for n, accepted in enumerate(turns):
            reply = finished[accepted["task_id"]]["result"]
            assert f"given {n} earlier turn" in reply, reply

    ids = ", ".join(f"'{i}'" for i in task_ids)
    replies = query(
        distributed.database_url,
        f"SELECT task_id, count(*) FROM messages WHERE role = 'assistant' AND task_id IN ({ids}) "
        "GROUP BY task_id",
    )
    assert len(replies) == 200 and {count for _, count in replies} == {1}
    workers_used = query(
        distributed.database_url, f"SELECT count(DISTINCT worker_id) FROM tasks WHERE id IN ({ids})"
    )
    assert workers_used == [(2,)]  # both workers took a share


def test_readers_on_two_gateways_see_the_same_stream(distributed: Distributed) -> None:
    port = free_port()
    second = Process(["api", "--port", str(port)], distributed.env, distributed.folder)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", second)
        accepted = submit(distributed.client, "stream me [latency:800]", model="mock-chat")
        path = f"/v1/tasks/{accepted['task_id']}/events"
        urls = [
            f"{str(distributed.client.base_url).rstrip('/')}{path}",
            f"http://127.0.0.1:{port}{path}",
        ]

        def read(url: str) -> list[tuple[str | None, str, object]]:
            with httpx.stream("GET", url, timeout=30) as response:
                return [(e.id, e.event, e.data) for e in read_events(response)]

        with ThreadPoolExecutor(2) as pool:
            first, other = pool.map(read, urls)
    finally:
        second.stop()
    assert first == other
    assert first[-1][1] == "done" and sum(kind == "delta" for _, kind, _ in first) > 5


def test_values_postgresql_cannot_store_are_a_400(distributed: Distributed) -> None:
    before = row_counts(distributed.database_url)
    response = distributed.client.post(
        "/v1/chat/completions", json={"prompt": "nul \u0000 inside", "model": "mock-chat"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request"
    assert row_counts(distributed.database_url) == before
