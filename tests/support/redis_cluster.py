"""A Redis Cluster of the suite's own: three `redis-server --cluster-enabled yes` nodes on loopback,
masters only, each owning a third of the slots, joined by `redis-cli --cluster create`."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.processes import free_port, wait_for_port
from tests.support.services import new_redis_prefix

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
        """A plain client of each node (a node answers only for its own slots)."""
        return [redis.Redis(port=p, decode_responses=True, socket_timeout=5) for p in self.ports]

    def ok(self) -> bool:
        for client in self.clients():
            with client:
                if client.cluster("INFO").get("cluster_state") != "ok":
                    return False
        return True

    @contextmanager
    def fresh_prefix(self) -> Iterator[str]:
        """A key prefix of its own on the cluster; its keys, on every node, deleted afterwards."""
        prefix = new_redis_prefix()
        try:
            yield prefix
        finally:
            for client in self.clients():
                with client:
                    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                        client.delete(key)  # one key at a time: a node refuses cross-slot deletes


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH: the Redis Cluster tests need it")  # fail, never skip
    return found


@contextmanager
def running_cluster(folder: Path) -> Iterator[Cluster]:
    """Start the nodes (their files under `folder`), join them, wait for `cluster_state:ok`; kill
    them afterwards."""
    server, cli = _tool("redis-server"), _tool("redis-cli")
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
        cluster = Cluster(ports)
        deadline = time.monotonic() + 20
        while not cluster.ok():
            assert time.monotonic() < deadline, "the cluster never reached cluster_state:ok"
            time.sleep(0.1)
        yield cluster
    finally:
        for node in nodes:
            node.kill()
            node.wait()
