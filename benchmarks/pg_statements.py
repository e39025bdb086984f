"""Where PostgreSQL's time per task goes, statement by statement: aitasks (one gateway, one
worker, the mock answering at once) on a PostgreSQL cluster of its own with pg_stat_statements
loaded, under the end-to-end benchmark's closed loop (C clients, each submitting a chat task and
polling it every --poll-ms until it has finished). After a warm-up the statistics are reset; at
the end, each statement's calls and executor plus planner time per completed task, busiest first,
beside the cluster's CPU per task (every process of it, from /proc).

pg_stat_statements times are wall-clock time inside the server (lock waits included), so they
rank statements; the cluster's CPU is the figure issue 20's target is read against. The shared
server cannot load the extension (it must not be reconfigured), hence a cluster of its own, with
PostgreSQL's defaults (autovacuum on) unless --autovacuum off, as on the suite's shared server.

    .venv/bin/python -m benchmarks.pg_statements --tasks 3000 --concurrency 50
    .venv/bin/python -m benchmarks.pg_statements --quick
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    WAITERS,
    System,
    _start_aitasks,
    closed_loop,
    private_redis,
    run_loop,
    sql,
    stopped_after,
    warm_up,
)
from benchmarks.soak_system import DefaultCluster, cluster_cpu
from tests.support.postgres_cluster import started_cluster
from tests.support.processes import free_port


class StatementsCluster(DefaultCluster):
    """PostgreSQL's defaults, with pg_stat_statements counting every statement and its planning."""

    def __init__(self, folder: Path, port: int, *, autovacuum: bool) -> None:
        super().__init__(folder, port)
        self.autovacuum = autovacuum

    def init(self) -> None:
        super().init()
        settings = (
            "shared_preload_libraries = 'pg_stat_statements'\n"
            "pg_stat_statements.track = all\n"
            "pg_stat_statements.track_planning = on\n"
            f"autovacuum = {'on' if self.autovacuum else 'off'}\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(settings)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000, help="tasks measured")
    parser.add_argument("--warm-up", type=int, default=500, help="tasks run before the reset")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--poll-ms", type=float, default=20.0)
    parser.add_argument("--autovacuum", choices=["on", "off"], default="on")
    parser.add_argument("--top", type=int, default=15, help="statements listed")
    parser.add_argument("--quick", action="store_true", help="100 tasks at concurrency 5")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.warm_up, args.concurrency = 100, 20, 5
    return args


@contextlib.contextmanager
def statements_system(autovacuum: bool) -> Iterator[tuple[System, StatementsCluster]]:
    folder = Path(tempfile.mkdtemp(prefix="aitasks-pgstat-"))

    def make(where: Path) -> StatementsCluster:
        return StatementsCluster(where, free_port(), autovacuum=autovacuum)

    with started_cluster(make, prefix="aitasks-pgstat-pg-") as cluster, private_redis() as redis:
        redis_url, redis_pid = redis
        system = System("aitasks", [], cluster.url, redis_url, folder, redis_pid)
        with stopped_after(system):
            cluster.execute("CREATE EXTENSION pg_stat_statements")
            _start_aitasks(system, folder, redis_url, 1, 1, 0, None, {})
            warm_up(system)
            yield system, cluster


# Each statement's share, per completed task; the busiest first.
REPORT = """
SELECT calls, total_exec_time, total_plan_time, rows, shared_blks_hit + shared_blks_read,
       wal_records, regexp_replace(query, '\\s+', ' ', 'g')
FROM pg_stat_statements
WHERE query NOT LIKE '%pg_stat_statements%'
ORDER BY total_exec_time + total_plan_time DESC
"""


@dataclass(frozen=True, slots=True)
class Statement:
    calls: int
    exec_ms: float
    plan_ms: float
    rows: int
    blocks: int
    wal_records: int
    query: str

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> Statement:
        calls, exec_ms, plan_ms, rows, blocks, wal, query = row
        return cls(int(calls), float(exec_ms), float(plan_ms), int(rows), int(blocks), int(wal),
                   str(query))  # fmt: skip


def report(statements: list[Statement], tasks: int, top: int, cpu_s: float) -> list[str]:
    exec_ms = sum(s.exec_ms for s in statements)
    plan_ms = sum(s.plan_ms for s in statements)
    calls = sum(s.calls for s in statements)
    lines = [
        f"{tasks} tasks: cluster CPU {cpu_s / tasks * 1e6:.0f} us a task; statements "
        f"{calls / tasks:.1f} a task, executor {exec_ms / tasks * 1000:.0f} us, planner "
        f"{plan_ms / tasks * 1000:.0f} us a task",
        f"{'calls/task':>10} {'exec us/task':>12} {'plan us/task':>12} {'us/call':>8} "
        f"{'rows/call':>9} {'blks/call':>9} {'wal/call':>8}  statement",
    ]
    for s in statements[:top]:
        n = max(s.calls, 1)
        lines.append(
            f"{s.calls / tasks:>10.2f} {s.exec_ms / tasks * 1000:>12.1f} "
            f"{s.plan_ms / tasks * 1000:>12.1f} {(s.exec_ms + s.plan_ms) / n * 1000:>8.1f} "
            f"{s.rows / n:>9.2f} {s.blocks / n:>9.1f} {s.wal_records / n:>8.1f}  {s.query[:150]}"
        )
    return lines


def main() -> int:
    args = parse_args()
    wait = WAITERS["poll"](args.poll_ms / 1000)
    with statements_system(args.autovacuum == "on") as (system, cluster):
        run_loop(closed_loop(system.base_urls, args.warm_up, args.concurrency, wait))
        sql(system.database_url, "SELECT pg_stat_statements_reset()")
        before = cluster_cpu(cluster)
        result = run_loop(closed_loop(system.base_urls, args.tasks, args.concurrency, wait))
        cpu_s = cluster_cpu(cluster) - before
        assert result.failures == 0 and result.errors == 0, "tasks failed"
        statements = [Statement.of(row) for row in sql(system.database_url, REPORT)]
        print(f"completed/s {result.completed_per_s:.1f}, c={args.concurrency}")
        print("\n".join(report(statements, len(result.finished_at), args.top, cpu_s)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
