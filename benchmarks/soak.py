"""Soak: does aitasks stay as fast as its tables grow? N tasks through the real system (one gateway
and one worker process, PostgreSQL + Redis, the mock answering at once, autovacuum as the server
is configured), driven by a steady closed-loop client, with completed/s and latency per window.

Each of C clients submits a chat task (`POST /v1/chat/completions`, model mock-chat) and waits for
its result (`Prefer: wait`, or polling with --wait poll), then submits the next, until N tasks have
finished. Every --window-seconds it prints the window's completed/s and latency (submit sent to
result seen) p50 and p99; at the end the first full window against the last full one (the
criterion: the last's completed/s at least 90% of the first's and its p99 at most 1.5x), the CPU
each part spent per task, and what the tables and their indexes take on disk, their dead tuples,
HOT updates and last (auto)vacuum. PostgreSQL is a cluster of the soak's own with the server's
defaults, autovacuum on (`benchmarks.soak_system`): the suite's shared server has it off.

    .venv/bin/python -m benchmarks.soak                              # 500,000 tasks
    .venv/bin/python -m benchmarks.soak --tasks 100000 --concurrency 50 --window-seconds 60
    .venv/bin/python -m benchmarks.soak --quick                      # a smoke run; records nothing
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime

from benchmarks.harness import (
    WAITERS,
    LoadResult,
    System,
    Waiter,
    clients,
    cpu_use,
    one_task,
    percentile,
    run_loop,
    sql,
)
from benchmarks.report import append_result, machine_summary
from benchmarks.soak_system import DefaultCluster, cluster_cpu, soak_system

# The criterion: the last window against the first.
KEEP_THROUGHPUT = 0.9
MAX_P99_GROWTH = 1.5
# No task finished for this long: the system has stalled, and the run fails rather than hangs.
STALL_SECONDS = 120


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500_000, help="tasks to run in all")
    parser.add_argument("--concurrency", type=int, default=50, help="clients in the closed loop")
    parser.add_argument("--window-seconds", type=float, default=60, help="one reported window")
    parser.add_argument(
        "--wait", choices=["wait", "poll"], default="wait",
        help="how a client waits: Prefer: wait, or a GET every --poll-ms",
    )  # fmt: skip
    parser.add_argument("--poll-ms", type=float, default=20.0)
    parser.add_argument(
        "--max-minutes", type=float, default=None,
        help="stop submitting after this long even if fewer tasks have run (the record says so)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="300 tasks, 0.5 s windows; no record")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.concurrency, args.window_seconds, args.no_record = 300, 10, 0.5, True
    return args


@dataclass(frozen=True)
class Window:
    index: int
    seconds: float
    completed: int
    total: int  # finished since the start, at the window's end
    p50_ms: float
    p99_ms: float
    partial: bool = False  # the run's tail, cut short while the clients drained

    @property
    def per_s(self) -> float:
        return self.completed / self.seconds

    def line(self) -> str:
        return (
            f"{self.index:>4} {self.total:>9} {self.per_s:>12.1f} {self.p50_ms:>9.1f}"
            f" {self.p99_ms:>9.1f}"
        )


HEADER = f"{'win':>4} {'done':>9} {'completed/s':>12} {'p50 ms':>9} {'p99 ms':>9}"


def cut(
    result: LoadResult, since: int, seconds: float, index: int, *, partial: bool = False
) -> Window:
    """The window of tasks finished from position `since` on in `result` (they are appended in
    the order they finished, with their latencies)."""
    latencies = result.latencies[since:]
    return Window(
        index=index,
        seconds=seconds,
        completed=len(latencies),
        total=since + len(latencies),
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        partial=partial,
    )


async def soak(
    base_urls: list[str],
    n: int,
    concurrency: int,
    wait: Waiter,
    window_s: float,
    max_s: float | None = None,
) -> tuple[LoadResult, list[Window]]:
    """The closed loop, with a window cut (and printed) every `window_s` seconds; no task is
    submitted after `max_s` seconds."""
    pool = clients(base_urls, concurrency)
    result = LoadResult(started=time.perf_counter())
    windows: list[Window] = []
    counter = iter(range(n))
    stop_at = result.started + max_s if max_s else float("inf")

    async def client_loop() -> None:
        for i in counter:
            if time.perf_counter() > stop_at:
                return
            await one_task(pool[i % len(pool)], f"Hello, who are you? #{i}", wait, result, None)

    async def watch() -> None:
        seen, mark, stalled_since = 0, result.started, result.started
        while True:
            await asyncio.sleep(window_s - (time.perf_counter() - mark) % window_s)
            now = time.perf_counter()
            window = cut(result, seen, now - mark, len(windows) + 1)
            windows.append(window)
            print(window.line(), flush=True)
            seen, mark = window.total, now
            if window.completed:
                stalled_since = now
            elif now - stalled_since > STALL_SECONDS:
                raise RuntimeError(f"no task finished for {STALL_SECONDS} s: the system stalled")

    print(HEADER, flush=True)
    watcher = asyncio.create_task(watch())
    try:

        async def every_client() -> None:
            await asyncio.gather(*(client_loop() for _ in range(concurrency)))

        loops = asyncio.create_task(every_client())
        # Whichever ends first: all the tasks done, or the watcher failing the run.
        await asyncio.wait([loops, watcher], return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            loops.cancel()
            watcher.result()
        await loops
        seen = windows[-1].total if windows else 0
        mark = result.started + sum(w.seconds for w in windows)
        tail = cut(result, seen, time.perf_counter() - mark, len(windows) + 1, partial=True)
        if tail.completed:
            windows.append(tail)
            print(tail.line() + " (the tail)", flush=True)
    finally:
        watcher.cancel()
        for client in pool:
            await client.close()
    return result, windows


# Per table: total, heap, indexes (toast counts in the total), rows, dead rows, HOT share of the
# updates, vacuums by autovacuum, and when autovacuum last ran on it.
SIZES = """
SELECT s.relname,
       pg_size_pretty(pg_total_relation_size(s.relid)),
       pg_size_pretty(pg_relation_size(s.relid)),
       pg_size_pretty(pg_indexes_size(s.relid)),
       s.n_live_tup, s.n_dead_tup, s.n_tup_upd, s.n_tup_hot_upd,
       s.autovacuum_count, s.autoanalyze_count,
       to_char(s.last_autovacuum, 'HH24:MI:SS')
FROM pg_stat_user_tables s
WHERE s.relname IN ('tasks', 'messages', 'conversations', 'idempotency_keys',
                    'webhook_deliveries', 'ops_samples', 'files')
ORDER BY pg_total_relation_size(s.relid) DESC
"""
INDEXES = """
SELECT i.relname, i.indexrelname, pg_size_pretty(pg_relation_size(i.indexrelid)), i.idx_scan
FROM pg_stat_user_indexes i
WHERE i.relname IN ('tasks', 'messages', 'conversations', 'idempotency_keys')
ORDER BY i.relname, pg_relation_size(i.indexrelid) DESC
"""


def table_report(database_url: str) -> list[str]:
    """What the tables and their indexes take at the end, and how vacuum kept up."""
    time.sleep(1.5)  # each backend sends its statistics about once a second
    lines = [
        "tables at the end (total = heap + indexes + toast):",
        f"  {'table':<19}{'total':>11}{'heap':>11}{'indexes':>11}{'live':>10}{'dead':>9}"
        f"{'updates':>9}{'HOT':>6}{'autovac':>8}{'autoanl':>8}  last autovacuum",
    ]
    for name, total, heap, indexes, live, dead, upd, hot, vacs, analyzes, last in sql(
        database_url, SIZES
    ):
        hot_share = f"{hot / upd:.0%}" if upd else "-"  # of the updates, those HOT
        lines.append(
            f"  {name:<19}{total:>11}{heap:>11}{indexes:>11}{live:>10}{dead:>9}"
            f"{upd:>9}{hot_share:>6}{vacs:>8}{analyzes:>8}  {last or 'never'}"
        )
    lines.append("indexes at the end (size, scans):")
    for table, index, size, scans in sql(database_url, INDEXES):
        lines.append(f"  {table + '.' + index:<52}{size:>11}{scans:>12}")
    return lines


def verdict(windows: list[Window]) -> list[str]:
    """First full window against the last full one (the tail, cut short by the run's end while
    the clients drain, is left out)."""
    full = [w for w in windows if not w.partial] or windows
    first, last = full[0], full[-1]
    lines = [
        f"first window: {first.per_s:.1f} completed/s, p50 {first.p50_ms:.1f} ms, "
        f"p99 {first.p99_ms:.1f} ms",
        f"last full window (#{last.index}, {last.total} done): {last.per_s:.1f} completed/s, "
        f"p50 {last.p50_ms:.1f} ms, p99 {last.p99_ms:.1f} ms",
    ]
    if len(full) < 2:
        return [*lines, "criterion: not judged (fewer than two full windows)"]
    kept = last.per_s / first.per_s
    growth = last.p99_ms / first.p99_ms
    met = kept >= KEEP_THROUGHPUT and growth <= MAX_P99_GROWTH
    return [
        *lines,
        f"criterion (last >= {KEEP_THROUGHPUT:.0%} of first's completed/s, p99 <= "
        f"{MAX_P99_GROWTH}x): completed/s {kept:.0%} of the first, p99 {growth:.2f}x: "
        + ("met" if met else "NOT met"),
    ]


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu(system: System, cluster: DefaultCluster) -> dict[str, float]:
    """CPU seconds so far by part, PostgreSQL's being its own cluster's alone."""
    return {**cpu_use(system), "postgres": cluster_cpu(cluster)}


def run(system: System, cluster: DefaultCluster, args: argparse.Namespace) -> list[str]:
    wait = WAITERS[args.wait](args.poll_ms / 1000)
    before = cpu(system, cluster)
    started_load = load()
    max_s = args.max_minutes * 60 if args.max_minutes else None
    result, windows = run_loop(
        soak(system.base_urls, args.tasks, args.concurrency, wait, args.window_seconds, max_s)
    )
    after = cpu(system, cluster)
    result.cpu = {part: after[part] - before[part] for part in after}
    assert result.failures == 0, f"{result.failures} tasks did not succeed"
    elapsed = max(result.finished_at) - result.started
    done = len(result.finished_at)
    cut_short = (
        [f"stopped after --max-minutes {args.max_minutes:g}: {done} of {args.tasks} tasks ran"]
        if done < args.tasks
        else []
    )
    return [
        f"{args.tasks} tasks, {args.concurrency} clients waiting by {args.wait}, mock latency 0, "
        f"one gateway + one worker process, windows of {args.window_seconds:g} s; PostgreSQL "
        "a cluster of the soak's own with the server's defaults (autovacuum on)",
        *cut_short,
        f"machine load: at the start {started_load}; at the end {load()}",
        f"overall: {len(result.finished_at)} completed in {elapsed:.0f} s, "
        f"{result.completed_per_s:.1f} completed/s, p50 {result.ms(0.5):.1f} ms, "
        f"p99 {result.ms(0.99):.1f} ms, errors {result.errors}",
        f"CPU per completed task: {result.cpu_per_task()}",
        HEADER,
        *(w.line() + (" (the tail)" if w.partial else "") for w in windows),
        *verdict(windows),
        *table_report(system.database_url),
    ]


def main() -> int:
    args = parse_args()
    with soak_system() as (system, cluster):
        print("started aitasks on a PostgreSQL cluster of its own", flush=True)
        lines = run(system, cluster, args)
    print("\n".join(lines))
    if not args.no_record:
        command = "python -m benchmarks.soak " + " ".join(sys.argv[1:])
        append_result("Soak: flat as the work grows", command, lines)
    return 0


if __name__ == "__main__":
    print(f"soak benchmark on {machine_summary()} at {datetime.now():%Y-%m-%d %H:%M}", flush=True)
    raise SystemExit(main())
