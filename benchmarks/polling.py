"""Polling cost: how many `GET /v1/tasks/{id}` one gateway answers per second for finished tasks,
and what each costs PostgreSQL (transactions, rows read, buffer hits, from pg_stat_database, as
pg_stat_statements is not preloaded on a stock server) and Redis (INFO commandstats).

    .venv/bin/python -m benchmarks.polling --seconds 15 --concurrency 50
    .venv/bin/python -m benchmarks.polling --quick            # records nothing
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from benchmarks.harness import (
    SYSTEMS,
    closed_loop,
    db_counters,
    delta,
    long_wait,
    percentile,
    poller,
    redis_calls,
    run_loop,
    running,
    session,
    sql,
)
from benchmarks.report import append_result, machine_summary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200, help="finished tasks to read")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--quick", action="store_true", help="3 s on aitasks alone; no record")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.seconds, args.concurrency = 20, 3, 10
        args.systems, args.no_record = ["aitasks"], True
    return args


async def hammer(base_url: str, ids: list[str], seconds: float, concurrency: int) -> list[float]:
    """GET finished tasks round-robin for `seconds`; returns each request's latency."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with session(base_url, concurrency + 10) as client:

        async def one_client(k: int) -> None:
            i = k
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                async with client.get(f"/v1/tasks/{ids[i % len(ids)]}") as response:
                    assert response.status == 200, await response.text()
                    await response.read()
                latencies.append(time.perf_counter() - sent)
                i += concurrency

        await asyncio.gather(*(one_client(k) for k in range(concurrency)))
    return latencies


def measure(name: str, args: argparse.Namespace) -> str:
    with running(name) as system:
        url = system.base_urls[0]
        run_loop(
            closed_loop([url], args.tasks, 20, long_wait if name == "aitasks" else poller(0.02))
        )
        ids = [row[0] for row in sql(system.database_url, "SELECT id FROM tasks")]
        time.sleep(1.5)  # let PostgreSQL flush the statistics of the setup
        db_before, redis_before = db_counters(system.database_url), redis_calls(system.redis_url)
        latencies = run_loop(hammer(url, ids, args.seconds, args.concurrency))
        time.sleep(1.5)
        db = delta(db_before, db_counters(system.database_url))
        rd = delta(redis_before, redis_calls(system.redis_url))
    n = len(latencies)
    ms = [s * 1000 for s in latencies]
    # The benchmark's own two stats queries count too: one transaction each, negligible.
    # Below 0.01 a request is background work (heartbeats, the reconciler), not the GET's.
    per = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(db.items()) if v / n >= 0.01)
    redis_per = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(rd.items()) if v / n >= 0.01)
    return (
        f"{name}: {n / args.seconds:.0f} GET/s at c={args.concurrency} "
        f"(p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms); "
        f"per GET: PostgreSQL {per or 'nothing'}; Redis {redis_per or 'nothing'}"
    )


def main() -> int:
    args = parse_args()
    lines = [f"{args.tasks} finished tasks read round-robin for {args.seconds:g}s per system"]
    for name in args.systems:
        lines.append(measure(name, args))
        print(lines[-1], flush=True)
    if not args.no_record:
        command = "python -m benchmarks.polling " + " ".join(sys.argv[1:])
        append_result("Polling: GET /v1/tasks/{id} on finished tasks", command, lines)
    return 0


if __name__ == "__main__":
    print(f"polling benchmark on {machine_summary()}", flush=True)
    raise SystemExit(main())
