"""The distributed system on Redis Cluster: three `redis-server --cluster-enabled yes` nodes on
loopback, a gateway and a worker pointed at them by `REDIS_URL=redis+cluster://...`, the seed flows
over HTTP, and each queue's keys found together on one node."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
from redis.asyncio import RedisCluster

import tests.contract.test_queue as contract
from aitasks.queue.base import TaskQueue
from aitasks.queue.redis import RedisStreamQueue
from aitasks.redis_connect import cluster_url, connect
from tests.conftest import fresh_postgres_database
from tests.contract.conftest import REDELIVER_AFTER
from tests.flows import conversation_with_history_and_an_image, submit
from tests.helpers import (
    Process,
    free_port,
    run_cli,
    service_env,
    wait_for_port,
    wait_for_tasks,
    wait_until_up,
)

PREFIX = "aitasks-cluster"
NODES = 3
# Masters only: each node owns a third of the slots.
CREATE_OPTIONS = ("--cluster-replicas", "0", "--cluster-yes")


@dataclass
class Cluster:
    ports: list[int]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def clients(self) -> list[redis.Redis]:
        return [redis.Redis(port=p, decode_responses=True, socket_timeout=5) for p in self.ports]


@dataclass
class Deployment:
    client: httpx.Client
    worker: Process
    cluster: Cluster


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH: the Redis Cluster test needs it")  # fail, never skip
    return found


def _cluster_ok(cluster: Cluster) -> bool:
    for client in cluster.clients():
        with client:
            if client.cluster("INFO").get("cluster_state") != "ok":
                return False
    return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    server, cli = _tool("redis-server"), _tool("redis-cli")
    folder = tmp_path_factory.mktemp("cluster")
    # Each node's bus port is named, not left at port + 10000, which may not be a valid port.
    ports, buses = [free_port() for _ in range(NODES)], [free_port() for _ in range(NODES)]
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        for port, bus in zip(ports, buses, strict=True):
            args = [
                server, "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(bus),
                "--cluster-config-file", f"nodes-{port}.conf",
                "--save", "", "--appendonly", "no", "--dir", str(folder),
            ]  # fmt: skip
            with (folder / f"node-{port}.log").open("ab") as log:  # the node keeps its own copy
                nodes.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        for port in ports:
            wait_for_port(port)
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), *CREATE_OPTIONS],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        made = Cluster(ports)
        deadline = time.monotonic() + 20
        while not _cluster_ok(made):
            assert time.monotonic() < deadline, "the cluster never reached cluster_state:ok"
            time.sleep(0.1)
        yield made
    finally:
        for node in nodes:
            node.kill()
            node.wait()


@pytest.fixture(scope="module")
def deployment(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("on-cluster")
    with fresh_postgres_database() as database_url:
        env = service_env(
            DATABASE_URL=database_url,
            REDIS_URL=cluster.url,
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
                yield Deployment(client, worker, cluster)
        finally:
            for process in (gateway, worker):
                process.stop()


def test_the_seed_flows_run_on_a_cluster(deployment: Deployment) -> None:
    conversation_with_history_and_an_image(deployment.client)


def test_a_cancel_reaches_the_worker_through_the_cluster(deployment: Deployment) -> None:
    client = deployment.client
    running = submit(client, "long [latency:30000]", model="mock-chat")
    task_id = running["task_id"]
    deadline = time.monotonic() + 15
    while client.get(f"/v1/tasks/{task_id}").json()["status"] != "RUNNING":
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    cancelled = client.post(f"/v1/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    # The announcement (pub/sub), not the next lease renewal 5 s on, stops the provider call.
    deployment.worker.wait_for_log(f"task {task_id} cancelled: stopping its provider call", 4)
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


def test_each_queues_keys_are_on_one_node(deployment: Deployment) -> None:
    # The worker makes every queue's stream (and its group) at its first read.
    wanted = {"q:gemini", "q:deepseek", "q:openai", "q:anthropic", "q:sd", "q:mock"}
    deadline = time.monotonic() + 10
    while not wanted <= set(nodes_of := _queue_nodes(deployment.cluster)):
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


@pytest.fixture
async def queue(cluster: Cluster) -> AsyncIterator[TaskQueue]:
    prefix = f"aitasks-test-{secrets.token_hex(6)}"
    task_queue = RedisStreamQueue.from_url(
        cluster.url, prefix=prefix, redeliver_after=REDELIVER_AFTER
    )
    yield task_queue
    await task_queue.close()


QUEUE_CONTRACT = [
    contract.test_a_published_task_is_delivered_once_and_acked,
    contract.test_receive_waits_for_a_publish,
    contract.test_only_the_named_queues_are_read,
    contract.test_an_abandoned_delivery_goes_to_another_consumer,
    contract.test_touching_a_delivery_keeps_it,
    contract.test_count_bounds_one_receive,
    contract.test_rate_slots_are_a_sliding_window,
]


@pytest.mark.parametrize("check", QUEUE_CONTRACT, ids=lambda check: check.__name__[5:])
async def test_the_queue_contract_holds_on_a_cluster(
    queue: TaskQueue, check: Callable[[TaskQueue], Awaitable[None]]
) -> None:
    await check(queue)


async def test_queues_on_several_nodes_are_read_together(queue: TaskQueue) -> None:
    # gemini and deepseek hash to slots on different nodes of three.
    queues = ["gemini", "deepseek", "openai"]
    await queue.publish("gemini", "g")
    await queue.publish("deepseek", "d")
    first = await queue.receive(queues, "c", count=1, wait_seconds=1)
    second = await queue.receive(queues, "c", count=5, wait_seconds=1)
    assert len(first) == 1 and {d.task_id for d in first + second} == {"g", "d"}
    # A wait across nodes wakes for the node the entry lands on, and takes nothing elsewhere.
    receiving = asyncio.create_task(queue.receive(queues, "c", count=5, wait_seconds=5))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await queue.publish("openai", "o")
    assert [d.task_id for d in await receiving] == ["o"]
    assert time.monotonic() - started < 1
    assert await queue.receive(queues, "c", count=5, wait_seconds=0.05) == []
