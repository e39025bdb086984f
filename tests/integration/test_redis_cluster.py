"""The distributed system on Redis Cluster (the suite's three nodes: support/redis_cluster.py):
a gateway and a worker pointed at them by `REDIS_URL=redis+cluster://...`, the seed flows over
HTTP, a cancel announced across nodes, and each queue's keys found together on one node by their
hash tag. (The queue, event-log and counter contracts run on the cluster too: tests/contract.)"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import RedisCluster

from aitasks.config import Settings
from aitasks.events import DONE
from aitasks.redis_connect import cluster_url, connect
from aitasks.services import Services
from tests.support.flows import conversation_with_history_and_an_image, submit, wait_for_tasks
from tests.support.processes import Process, free_port, run_cli, service_env, wait_until_up
from tests.support.redis_cluster import Cluster
from tests.support.services import fresh_postgres_database

PREFIX = "aitasks-cluster"
# As many first commands at once as a gateway's first requests may send.
BURST = 30


@dataclass
class OnCluster:
    client: httpx.Client
    worker: Process
    cluster: Cluster


@pytest.fixture(scope="module")
def on_cluster(
    redis_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OnCluster]:
    folder = tmp_path_factory.mktemp("on-cluster")
    with fresh_postgres_database() as database_url:
        env = service_env(
            DATABASE_URL=database_url,
            REDIS_URL=redis_cluster.url,
            AITASKS_REDIS_PREFIX=PREFIX,
            AITASKS_DATA_DIR=str(folder / "data"),
            AITASKS_MOCK_LATENCY_MS="20",
        )
        upgraded = run_cli(["db", "upgrade"], env, folder)
        assert upgraded.returncode == 0, upgraded.stderr

        port = free_port()
        gateway = Process(["api", "--port", str(port)], env, folder)
        # One slot, so a cancelled task that goes on holding it would hold up the next.
        worker = Process(["worker", "--concurrency", "1"], env, folder)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base_url, gateway)
            with httpx.Client(base_url=base_url, timeout=10) as client:
                yield OnCluster(client, worker, redis_cluster)
        finally:
            for process in (gateway, worker):
                process.stop()


def test_the_seed_flows_run_on_a_cluster(on_cluster: OnCluster) -> None:
    conversation_with_history_and_an_image(on_cluster.client)


def test_a_cancel_reaches_the_worker_through_the_cluster(on_cluster: OnCluster) -> None:
    client = on_cluster.client
    running = submit(client, "long [latency:30000]", model="mock-chat")
    task_id = running["task_id"]
    deadline = time.monotonic() + 15
    while client.get(f"/v1/tasks/{task_id}").json()["status"] != "RUNNING":
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    cancelled = client.post(f"/v1/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    # The announcement (pub/sub), not the next lease renewal 5 s on, stops the provider call.
    on_cluster.worker.wait_for_log(f"task {task_id} cancelled: stopping its provider call", 4)
    after = submit(client, "next", model="mock-chat")
    assert wait_for_tasks(client, [after["task_id"]], timeout=10)[after["task_id"]]["status"] == (
        "SUCCESS"
    )


def _queue_nodes(cluster: Cluster) -> dict[str, set[int]]:
    """Which nodes hold keys tagged with each queue's hash tag."""
    tag = re.compile(r"\{(q:[^}]+)\}")
    nodes_of: dict[str, set[int]] = {}
    for port, client in zip(cluster.ports, cluster.clients(), strict=True):
        with client:
            for key in client.scan_iter(match=f"{PREFIX}:*", count=1000):
                found = tag.search(key)
                if found:
                    nodes_of.setdefault(found.group(1), set()).add(port)
    return nodes_of


def test_each_queues_keys_are_on_one_node(on_cluster: OnCluster) -> None:
    # The worker makes every queue's stream (and its group) at its first read.
    wanted = {"q:gemini", "q:deepseek", "q:openai", "q:anthropic", "q:sd", "q:mock"}
    deadline = time.monotonic() + 10
    while not wanted <= set(nodes_of := _queue_nodes(on_cluster.cluster)):
        assert time.monotonic() < deadline, nodes_of
        time.sleep(0.1)
    assert all(len(ports) == 1 for ports in nodes_of.values()), nodes_of
    # Their slots are spread over more than one node, so the worker read across nodes.
    assert len(set().union(*nodes_of.values())) > 1, nodes_of


def test_a_cluster_url_opens_a_cluster_client() -> None:
    assert cluster_url("redis+cluster://h:7000") == "redis://h:7000"
    assert cluster_url("rediss+cluster://u:p@h:7000/0") == "rediss://u:p@h:7000/0"
    assert cluster_url("redis://h:6379/0") is None
    assert isinstance(connect("redis+cluster://h:7000", socket_timeout=1), RedisCluster)
    assert not isinstance(connect("redis://h:6379/0", socket_timeout=1), RedisCluster)


async def test_a_started_services_first_commands_all_at_once_succeed(
    redis_cluster: Cluster, cluster_prefix: str, tmp_path: Path
) -> None:
    """redis-py's cluster client, fresh, fails some of a burst of first commands ('NoneType'
    object has no attribute 'writelines'); the gateway and the worker warm their clients
    (`Services.warm`) before serving, so the first requests' commands, all at once, succeed on
    each of them: the queue's, the event log's and the limits'."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, redis_url=redis_cluster.url, redis_prefix=cluster_prefix
    )
    services = Services.open(settings)
    try:
        await services.warm()
        tasks = [f"t{n}" for n in range(BURST)]
        await asyncio.gather(*(services.queue.publish("mock", task) for task in tasks))
        ended = await asyncio.gather(*(services.events.append(t, DONE, {}) for t in tasks))
        assert all(ended)
        counted = await asyncio.gather(
            *(services.limits.counters.count_request(t, 1, 100, 0.0) for t in tasks)
        )
        assert [current for _, current, _ in counted] == [1] * BURST
    finally:
        await services.close()
