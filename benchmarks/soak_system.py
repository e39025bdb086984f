"""The soak's system: aitasks (one gateway, one worker) on a PostgreSQL cluster of its own, set up
as PostgreSQL ships (autovacuum on, fsync and synchronous commit on, 128 MB of shared buffers),
and a private Redis. Not the suite's shared server: that one runs with autovacuum off (a CI
setting, so that vacuum does not disturb the tests), and whether vacuum keeps up as the tables
grow is part of what the soak measures."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks import pg_cpu
from benchmarks.harness import (
    System,
    _start_aitasks,
    private_redis,
    stopped_after,
    warm_up,
)
from tests.support.postgres_cluster import PostgresCluster, started_cluster
from tests.support.processes import free_port


class DefaultCluster(PostgresCluster):
    """A cluster with PostgreSQL's own defaults (fsync and synchronous commit on, initdb syncing
    its files), but for where it listens (the test clusters turn fsync and synchronous commit
    off)."""

    INITDB_OPTIONS = ()
    SETTINGS = ""

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])


@contextlib.contextmanager
def soak_system() -> Iterator[tuple[System, DefaultCluster]]:
    """aitasks started on its own cluster and Redis; everything stopped and removed after."""
    folder = Path(tempfile.mkdtemp(prefix="aitasks-soak-"))

    def make(where: Path) -> DefaultCluster:
        return DefaultCluster(where, free_port())

    with started_cluster(make, prefix="aitasks-soak-pg-") as cluster, private_redis() as redis:
        redis_url, redis_pid = redis
        system = System("aitasks", [], cluster.url, redis_url, folder, redis_pid)
        with stopped_after(system):
            _start_aitasks(system, folder, redis_url, 1, 1, 0, None, {})
            warm_up(system)
            yield system, cluster


def cluster_cpu(cluster: DefaultCluster) -> float:
    """CPU seconds the cluster used so far: the postmaster and every process it started (its
    backends, autovacuum workers, checkpointer...), with those that ended and were reaped. The
    cluster is the soak's alone, so all of it is the system's."""
    return pg_cpu.cluster_cpu(cluster.postmaster_pid())
