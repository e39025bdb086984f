"""`benchmarks.pg_cpu` against the real shared PostgreSQL: a busy loop of queries on one database is
put on that database, not on another one beside it, whether its backend lives through the
measurement (a pool's connection) or ends during it; and a cluster of a test's own is counted
whole, the backends that ended included. The truth each figure is held to is the busy backend's
own CPU, read from /proc just before it ends."""

from __future__ import annotations

import time
from dataclasses import astuple

import psycopg

from benchmarks.pg_cpu import DatabaseCpu, cluster_cpu, process_cpu
from tests.support.postgres_cluster import own_postgres
from tests.support.services import fresh_postgres_database

# Server CPU a busy query burns: a few tenths of a second (a sum over a generated series).
BUSY_QUERY = "SELECT sum(i) FROM generate_series(1, 2000000) AS i"
# The samplers look this often here, so that a backend living half a second is seen.
INTERVAL = 0.05


def busy_backend(url: str, seconds: float) -> float:
    """Queries on one connection of `url` for `seconds` of wall time; the CPU its backend used
    (all of its life), read just before it ends."""
    with psycopg.connect(url, autocommit=True) as connection:
        # One process does all the work: no parallel worker beside the backend read here.
        connection.execute("SET max_parallel_workers_per_gather = 0")
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            connection.execute(BUSY_QUERY)
        reading = process_cpu(int(backend[0]))
        assert reading is not None
        return reading.seconds


def test_a_busy_database_is_charged_its_backends_cpu_and_the_one_beside_it_nothing() -> None:
    with (
        fresh_postgres_database() as busy_url,
        fresh_postgres_database() as idle_url,
        DatabaseCpu(busy_url, interval=INTERVAL) as busy,
        DatabaseCpu(idle_url, interval=INTERVAL) as idle,
    ):
        # One backend kept through the measurement, as a pool keeps its connections.
        with psycopg.connect(busy_url, autocommit=True) as kept:
            kept.execute("SET max_parallel_workers_per_gather = 0")
            pid = kept.execute("SELECT pg_backend_pid()").fetchone()
            assert pid is not None
            before = process_cpu(int(pid[0]))
            busy_before, idle_before = busy.reading(), idle.reading()
            for _ in range(4):
                kept.execute(BUSY_QUERY)
            after = process_cpu(int(pid[0]))
            busy_used, idle_used = busy.reading() - busy_before, idle.reading() - idle_before
        assert before is not None and after is not None
        truth = after.seconds - before.seconds
        assert truth > 0.2, truth  # the loop did load the server
        # Its own backend's CPU, give or take a clock tick per reading (and nothing else runs on
        # this fresh database); none of it on the database beside it, which sees it as another's.
        assert truth - 0.03 <= busy_used.database <= truth + 0.03, (truth, busy_used)
        assert idle_used.database <= 0.03, idle_used
        assert idle_used.other_databases >= truth - 0.03, (truth, idle_used)
        assert min(astuple(busy_used)) >= 0, busy_used


def test_backends_that_end_during_the_measurement_still_count() -> None:
    with fresh_postgres_database() as url, DatabaseCpu(url, interval=INTERVAL) as sampler:
        start = sampler.reading()
        # Connections that open, work for half a second and close, as a client without a pool
        # does: a whole-server difference loses them, the sampler keeps their last readings.
        truth = sum(busy_backend(url, 0.5) for _ in range(3))
        used = sampler.reading() - start
    assert truth > 0.3, truth
    # What the last samples saw of them; what they did after those (about a sample interval's
    # worth each, more on a loaded machine) is not the database's but unattributed, never lost.
    assert 0.6 * truth <= used.database <= truth + 0.03, (truth, used)
    assert used.database + used.unattributed >= truth - 0.03, (truth, used)


def test_a_cluster_of_its_own_is_counted_whole_ended_backends_included() -> None:
    with own_postgres() as cluster:
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        before = cluster_cpu(postmaster)
        truth = sum(busy_backend(cluster.url, 0.4) for _ in range(3))
        used = cluster_cpu(postmaster) - before
    assert truth > 0.2, truth
    # Every backend's CPU, though each ended before the second reading; the rest of the
    # cluster (its background processes, the connections' start-up) adds a little.
    assert truth - 0.03 <= used <= truth + 0.5, (truth, used)
