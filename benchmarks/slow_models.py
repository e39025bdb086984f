"""Slow models: 10,000 chat tasks in flight at once in ONE worker process, the mock taking 2 s.

The tasks are all submitted first, with no worker running; then one `aitasks worker
--concurrency 10000` starts and takes them all at once. Reports the worker's peak resident memory
(VmHWM from /proc), how many tasks it held RUNNING at once, tasks/s from its start to the last
result, and that every task ended SUCCESS.

    .venv/bin/python -m benchmarks.slow_models --tasks 10000 --latency-ms 2000
    .venv/bin/python -m benchmarks.slow_models --quick      # 200 tasks; records nothing
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from benchmarks.harness import (
    MODEL,
    peak_rss_mib,
    progress_bar,
    run_loop,
    running,
    session,
    start_aitasks_worker,
    status_counts,
)
from benchmarks.report import append_result, machine_summary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=2000)
    parser.add_argument("--submit-concurrency", type=int, default=50)
    parser.add_argument("--limit-seconds", type=float, default=300, help="give up after")
    parser.add_argument("--quick", action="store_true", help="200 tasks; no record")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.no_record = 200, True
    return args


async def submit_all(base_url: str, n: int, concurrency: int) -> float:
    """Submit n tasks; returns submits per second."""
    bar, advance = progress_bar(n, "submitting")
    counter = iter(range(n))
    async with session(base_url, concurrency + 10) as client:

        async def one_client() -> None:
            for i in counter:
                body = {"prompt": f"Tell me a slow story #{i}", "model": MODEL}
                async with client.post("/v1/chat/completions", json=body) as response:
                    assert response.status == 202, await response.text()
                advance()

        started = time.perf_counter()
        with bar:
            await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


def main() -> int:
    args = parse_args()
    env = {"AITASKS_MAX_QUEUE_DEPTH": str(args.tasks * 2), "AITASKS_LEASE_SECONDS": "30"}
    with running("aitasks", workers=0, latency_ms=args.latency_ms, extra_env=env) as system:
        submit_rate = run_loop(submit_all(system.base_urls[0], args.tasks, args.submit_concurrency))
        print(f"submitted {args.tasks} at {submit_rate:.0f}/s; starting one worker", flush=True)
        started = time.perf_counter()
        worker = start_aitasks_worker(system, concurrency=args.tasks)
        pid = worker.popen.pid
        most_running, counts = 0, {}
        bar, advance = progress_bar(args.tasks, "finishing")
        done_before = 0
        with bar:
            while time.perf_counter() - started < args.limit_seconds:
                counts = status_counts(system.database_url)
                most_running = max(most_running, counts.get("RUNNING", 0))
                done = counts.get("SUCCESS", 0) + counts.get("FAILED", 0)
                for _ in range(done - done_before):
                    advance()
                done_before = done
                if done >= args.tasks:
                    break
                time.sleep(0.25)
        elapsed = time.perf_counter() - started
        peak, now = peak_rss_mib(pid)
    ok = counts.get("SUCCESS", 0) == args.tasks and len(counts) == 1
    lines = [
        f"{args.tasks} tasks, mock reply {args.latency_ms} ms, one worker --concurrency "
        f"{args.tasks}; submitted first at {submit_rate:.0f}/s",
        f"worker peak RSS {peak:.0f} MiB (at the end {now:.0f} MiB); "
        f"most RUNNING at once {most_running}",
        f"{done_before} finished in {elapsed:.1f}s from the worker's start: "
        f"{done_before / elapsed:.1f} tasks/s; final statuses {counts} -> "
        f"{'every task SUCCESS' if ok else 'NOT all SUCCESS'}",
    ]
    print("\n".join(lines))
    if not args.no_record:
        command = "python -m benchmarks.slow_models " + " ".join(sys.argv[1:])
        append_result("Slow models: many tasks in one worker", command, lines)
    return 0 if ok else 1


if __name__ == "__main__":
    print(f"slow-models benchmark on {machine_summary()}", flush=True)
    raise SystemExit(main())
