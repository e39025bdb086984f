"""The system as it is deployed: three hosts that share nothing but the network (network
namespaces joined by veth pairs, `tests/support/netns.py`). Host a runs PostgreSQL, Redis and an
S3-compatible server; hosts b and c each run a gateway and a worker, with their own working and
data folders. Through both gateways: the seed's flows; an image made by the worker on the other
host, fetched through this gateway; a stream resumed on the other gateway; a worker killed on one
host and its tasks finished on the other. Once with the `postgres` file store (the default on
PostgreSQL), once with `s3://`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.cross_host import Backends, Deployment, backends_on, deployed, stop_all
from tests.support.flows import conversation_with_history_and_an_image, submit, wait_for_tasks
from tests.support.netns import Network, three_hosts
from tests.support.services import query
from tests.support.sse import read_events

# Both stores run on one set of hosts; the whole module is well under a minute and a half.
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    with three_hosts() as hosts:
        yield hosts


@pytest.fixture(scope="module")
def backends(network: Network) -> Iterator[Backends]:
    """PostgreSQL, Redis and the S3 server on host a, for both stores' runs."""
    stack = ExitStack()
    started = network.on_a(lambda: stack.enter_context(backends_on(network)))
    try:
        yield started
    finally:
        stop_all()  # whatever a scenario that hung left running on hosts b and c
        network.on_a(stack.close)


def _flows(deployment: Deployment) -> None:
    """Every flow of the test, through both gateways (run on host a)."""
    with deployment.client("b") as on_b, deployment.client("c") as on_c:
        # The seed's flows, through each gateway. Every image is made by the worker on host b,
        # so through gateway c it is a file made on the other host.
        conversation_with_history_and_an_image(on_b)
        conversation_with_history_and_an_image(on_c)

        # An image made on b, asked for through c by the link b's answer gave (its host swapped).
        image = submit(on_b, "a lighthouse", path="/v1/images/generations",
                       model="stable-diffusion-3")  # fmt: skip
        [url] = wait_for_tasks(on_b, [image["task_id"]])[image["task_id"]]["result"]
        parts = urlsplit(url)
        through_c = on_c.get(f"{parts.path}?{parts.query}")
        assert through_c.status_code == 200, through_c.text
        assert through_c.content == on_b.get(url).content
        assert through_c.content.startswith(b"\x89PNG")


def _flows_that_no_store_changes(deployment: Deployment) -> None:
    """A stream resumed and a killed worker's tasks finished across hosts: files play no part,
    so one store's run shows them."""
    with deployment.client("b") as on_b, deployment.client("c") as on_c:
        _stream_resumed_on_the_other_gateway(on_b, on_c)
        _worker_killed_and_its_tasks_finished_elsewhere(deployment, on_b, on_c)


def _stream_resumed_on_the_other_gateway(on_b: httpx.Client, on_c: httpx.Client) -> None:
    task = submit(on_b, "[latency:1500] tell me about the sea", model="mock-chat")
    seen = []
    with on_b.stream("GET", f"/v1/tasks/{task['task_id']}/events") as first:
        for event in read_events(first):
            seen.append(event)
            if sum(e.event == "delta" for e in seen) >= 3:
                break
    with on_c.stream(
        "GET", f"/v1/tasks/{task['task_id']}/events", headers={"Last-Event-ID": seen[-1].id or ""}
    ) as rest:
        seen += list(read_events(rest))
    ids = [e.id for e in seen]
    assert len(ids) == len(set(ids)), "an event came twice"
    assert seen[-1].event == "done"
    text = "".join(e.data["delta"] for e in seen if e.event == "delta")
    assert text == on_c.get(f"/v1/tasks/{task['task_id']}").json()["result"]


def _worker_killed_and_its_tasks_finished_elsewhere(
    deployment: Deployment, on_b: httpx.Client, on_c: httpx.Client
) -> None:
    worker_c = deployment.workers["c"]
    tasks = [submit(on_c, f"[latency:2000] slow {n}", model="mock-chat") for n in range(6)]
    ids = [t["task_id"] for t in tasks]
    quoted = ",".join(f"'{i}'" for i in ids)
    # Wait until c's worker holds some (b's takes 2 at most: its concurrency).
    held: list[str] = []
    deadline = time.monotonic() + 15
    while not held:
        assert time.monotonic() < deadline, "the worker on host c never took a task"
        rows = query(
            deployment.database_url,
            f"SELECT id, worker_id FROM tasks WHERE id IN ({quoted}) AND status='RUNNING'",
        )
        held = [i for i, worker in rows if f"-{worker_c.popen.pid}-" in (worker or "")]
        time.sleep(0.05)  # fmt: skip
    worker_c.stop(signal.SIGKILL)

    finished = wait_for_tasks(on_b, ids, timeout=60)
    assert all(t["status"] == "SUCCESS" for t in finished.values()), finished
    assert all(finished[i]["attempts"] >= 2 for i in held), [finished[i] for i in held]


@pytest.mark.parametrize("store", ["postgres", "s3"])
def test_the_system_across_three_hosts(
    network: Network, backends: Backends, tmp_path: Path, store: str
) -> None:
    settings: dict[str, str] = {}
    if store == "s3":
        bucket = network.on_a(backends.s3.new_bucket)
        settings = {"AITASKS_FILE_STORE": f"s3://{bucket}/files", **backends.s3.env()}

    def scenario() -> None:
        with deployed(network, backends, tmp_path, f"aitasks_{store}", **settings) as deployment:
            _flows(deployment)
            if store == "postgres":
                _flows_that_no_store_changes(deployment)
                # The default on PostgreSQL: the bytes are in the database.
                [(chunks,)] = query(deployment.database_url, "SELECT count(*) FROM file_chunks")
                assert chunks > 0
            # Neither host's own folder holds an image: they are in the shared store.
            assert not [p for p in tmp_path.rglob("*") if p.is_file() and "files" in p.parts]

    network.on_a(scenario)
