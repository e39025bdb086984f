"""Scale-out: completed/s with 1, 2 and 4 worker processes and 1 and 2 gateway processes, for a
slow model (the mock taking 200 ms) and an instant one (0 ms).

The client keeps --concurrency tasks in flight (submit, then `Prefer: wait=30` until done), spread
round-robin over the gateways. Each worker runs at the product's default concurrency (8) unless
--worker-concurrency says otherwise, so with the slow model a worker's slots are the limit and the
figure shows whether adding workers adds throughput.

    .venv/bin/python -m benchmarks.scale_out --tasks 1500
    .venv/bin/python -m benchmarks.scale_out --quick        # records nothing
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.harness import WAITERS, LoadResult, closed_loop, measured, progress_bar, running
from benchmarks.report import append_result, machine_summary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1500, help="tasks per measurement")
    parser.add_argument("--concurrency", type=int, default=64, help="tasks the client keeps open")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--gateways", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[200, 0])
    parser.add_argument("--worker-concurrency", type=int, default=None)
    parser.add_argument("--mode", choices=list(WAITERS), default="wait")
    parser.add_argument("--quick", action="store_true", help="tiny run; no record")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.concurrency, args.workers, args.gateways = 40, 16, [1, 2], [1]
        args.latency_ms, args.no_record = [200], True
    return args


def measure(args: argparse.Namespace, latency_ms: int, gateways: int, workers: int) -> LoadResult:
    with running(
        "aitasks",
        gateways=gateways,
        workers=workers,
        latency_ms=latency_ms,
        worker_concurrency=args.worker_concurrency,
    ) as system:
        bar, advance = progress_bar(args.tasks, f"{latency_ms} ms, {gateways}g {workers}w")
        with bar:
            result = measured(
                system,
                closed_loop(system.base_urls, args.tasks, args.concurrency,
                            WAITERS[args.mode](0.02), advance),
            )  # fmt: skip
    assert result.failures == 0
    return result


def main() -> int:
    args = parse_args()
    lines = [
        f"{args.tasks} tasks per cell, client keeps {args.concurrency} in flight, waiting by "
        f"{args.mode}; worker concurrency {args.worker_concurrency or 'default (8)'}"
    ]
    for latency_ms in args.latency_ms:
        for gateways in args.gateways:
            base = 0.0
            for workers in args.workers:
                r = measure(args, latency_ms, gateways, workers)
                base = base or r.completed_per_s
                line = (
                    f"model {latency_ms:>4} ms, {gateways} gateway(s), {workers} worker(s): "
                    f"completed/s {r.completed_per_s:7.1f} ({r.completed_per_s / base:.2f}x one "
                    f"worker), p50 {r.ms(0.5):.0f} ms, p99 {r.ms(0.99):.0f} ms; "
                    f"CPU per task {r.cpu_per_task()}"
                )
                print(line, flush=True)
                lines.append(line)
    if not args.no_record:
        command = "python -m benchmarks.scale_out " + " ".join(sys.argv[1:])
        append_result("Scale-out: workers and gateways", command, lines)
    return 0


if __name__ == "__main__":
    print(f"scale-out benchmark on {machine_summary()}", flush=True)
    raise SystemExit(main())
