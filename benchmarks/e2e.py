"""End to end: aitasks against the seed's design and a Celery build of the same API, side by side.

Each of C clients submits a chat task (`POST /v1/chat/completions`, model mock-chat, the mock
answering at once) and waits until its result is visible, then submits the next, until N tasks have
finished. Waiting is by polling `GET /v1/tasks/{id}` every --poll-ms (the seed's client, the same
for all three systems); for aitasks also by `Prefer: wait=30` and by the task's SSE stream. Reports
submitted/s (202s), completed/s (results seen by the client) and latency from submit to result seen.
Also: the OpenAI-compatible sync path (`POST /openai/v1/chat/completions`) in requests/s.

    .venv/bin/python -m benchmarks.e2e --tasks 3000 --concurrency 20 50 200
    .venv/bin/python -m benchmarks.e2e --quick          # a smoke run; records nothing

All three systems run at once (each with one gateway process, one worker process, its own
redis-server and its own PostgreSQL database) and are measured in turn at each concurrency, so
machine noise hits them alike. Needs PostgreSQL (AITASKS_TEST_POSTGRES) and redis-server on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from datetime import datetime

from benchmarks.harness import (
    SYSTEMS,
    WAITERS,
    LoadResult,
    System,
    closed_loop,
    long_wait,
    measured,
    open_loop,
    percentile,
    progress_bar,
    run_loop,
    running,
    session,
)
from benchmarks.report import append_result, machine_summary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[20, 50, 200])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--poll-ms", type=float, default=20.0, help="the polling client's period")
    parser.add_argument(
        "--aitasks-modes", nargs="*", choices=["wait", "sse"], default=["wait", "sse"],
        help="extra ways aitasks' clients wait, besides polling",
    )  # fmt: skip
    parser.add_argument(
        "--open-seconds", type=float, default=20,
        help="aitasks under open-loop load at half its peak for this long, for the p99 (0 skips)",
    )  # fmt: skip
    parser.add_argument("--openai-requests", type=int, default=2000, help="0 skips the sync path")
    parser.add_argument("--openai-concurrency", type=int, default=20)
    parser.add_argument(
        "--profile", metavar="DIR",
        help="run aitasks' processes under pyinstrument, counting SQL and Redis calls, into DIR",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="30 tasks at concurrency 5; no record")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.concurrency, args.openai_requests, args.open_seconds = 30, [5], 30, 1
        args.openai_concurrency, args.no_record = 5, True
    return args


def measure(system: System, n: int, concurrency: int, mode: str, poll_s: float) -> LoadResult:
    bar, advance = progress_bar(n, f"{system.name} {mode} c={concurrency}")
    with bar:
        result = measured(
            system, closed_loop(system.base_urls, n, concurrency, WAITERS[mode](poll_s), advance)
        )
    assert result.failures == 0, f"{system.name}: {result.failures} tasks did not succeed"
    return result


async def openai_sync(base_url: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    """Closed loop of non-streamed `chat.completions.create`: requests/s and latencies."""
    body = {"model": "mock-chat", "messages": [{"role": "user", "content": "Hi!"}]}
    latencies: list[float] = []
    async with session(base_url, concurrency + 10) as client:
        counter = iter(range(n))
        started = time.perf_counter()

        async def one_client() -> None:
            for _ in counter:
                sent = time.perf_counter()
                async with client.post("/openai/v1/chat/completions", json=body) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return n / (time.perf_counter() - started), latencies


def half_peak(system: System, results: dict[tuple[str, int], LoadResult], seconds: float) -> str:
    """Latency at half of aitasks' peak: tasks arriving at a steady rate (open loop), each waited
    for with `Prefer: wait`, so what is measured is the system's time and not a polling period.
    The mock answers at once: all of it is time the system adds."""
    peak = max(
        r.completed_per_s for (label, _), r in results.items() if label.startswith("aitasks")
    )
    rate = peak / 2
    r = run_loop(open_loop(system.base_urls[0], rate, seconds, long_wait))
    assert r.failures == 0, f"{r.failures} tasks did not succeed"
    return (
        f"aitasks at half its peak ({rate:.0f} tasks/s arriving for {seconds:g} s, open loop, "
        f"waiting by wait): completed {len(r.finished_at)}, errors {r.errors}, "
        f"added latency p50 {r.ms(0.5):.1f} ms, p95 {r.ms(0.95):.1f} ms, p99 {r.ms(0.99):.1f} ms"
        f" (from the send: p50 {r.ms(0.5, r.from_sent):.1f}, p99 {r.ms(0.99, r.from_sent):.1f};"
        f" the client sent late by p50 {r.ms(0.5, r.client_lags):.2f} ms,"
        f" p99 {r.ms(0.99, r.client_lags):.2f} ms)"
    )


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def table(results: dict[tuple[str, int], LoadResult], args: argparse.Namespace) -> list[str]:
    names = [s for s in ("aitasks", "seed", "celery") if s in args.systems]
    head = f"{'c':>4} {'figure':<13}" + "".join(f"{n:>10}" for n in names)
    if "aitasks" in names:
        head += "".join(f"{'/' + n:>10}" for n in names if n != "aitasks")
    lines = [head]
    figures = [
        ("submitted/s", lambda r: r.submitted_per_s),
        ("completed/s", lambda r: r.completed_per_s),
        ("p50 ms", lambda r: r.ms(0.50)),
        ("p95 ms", lambda r: r.ms(0.95)),
        ("p99 ms", lambda r: r.ms(0.99)),
    ]
    for c in args.concurrency:
        for label, get in figures:
            values = {n: get(results[(f"{n} poll", c)]) for n in names}
            line = f"{c:>4} {label:<13}" + "".join(f"{values[n]:>10.1f}" for n in names)
            if "aitasks" in names:
                line += "".join(
                    f"{ratio(values['aitasks'], values[n]):>10}" for n in names if n != "aitasks"
                )
            lines.append(line)
    lines.append("CPU per completed task, polling client (all parts share the machine's 2 cores):")
    for c in args.concurrency:
        for n in names:
            lines.append(f"  c={c:<4} {n:<8} {results[(f'{n} poll', c)].cpu_per_task()}")
    for (label, c), r in results.items():
        if r.errors:
            lines.append(
                f"{label} c={c}: {r.errors} tasks lost to failed requests "
                "(5xx answers or transport errors; their tasks are not counted as completed)"
            )
    for mode in args.aitasks_modes if "aitasks" in names else []:
        for c in args.concurrency:
            r = results[(f"aitasks {mode}", c)]
            lines.append(
                f"aitasks, waiting by {mode}, c={c}: submitted/s {r.submitted_per_s:.1f}, "
                f"completed/s {r.completed_per_s:.1f}, p50 {r.ms(0.5):.1f} ms, "
                f"p95 {r.ms(0.95):.1f} ms, p99 {r.ms(0.99):.1f} ms"
            )
    return lines


def main() -> int:
    args = parse_args()
    poll_s = args.poll_ms / 1000
    results: dict[tuple[str, int], LoadResult] = {}
    lines: list[str] = []
    # aitasks' measurements of its own (latency at half peak, the OpenAI path) run after the
    # baselines have stopped: their idle processes would otherwise be noise in its tail latency.
    with contextlib.ExitStack() as ours, contextlib.ExitStack() as baselines:
        profiled = {"BENCH_PROFILE_DIR": args.profile} if args.profile else {}
        systems = {
            name: (ours if name == "aitasks" else baselines).enter_context(
                running(name, extra_env=profiled if name == "aitasks" else {})
            )
            for name in args.systems
        }
        print(f"started {', '.join(systems)}", flush=True)
        for c in args.concurrency:
            for name, system in systems.items():
                modes = ["poll", *(args.aitasks_modes if name == "aitasks" else [])]
                for mode in modes:
                    r = measure(system, args.tasks, c, mode, poll_s)
                    results[(f"{name} {mode}", c)] = r
                    print(f"  {name:<8} {mode:<5} c={c:<4} completed/s {r.completed_per_s:7.1f}"
                          f"  p99 {r.ms(0.99):7.1f} ms", flush=True)  # fmt: skip
        lines = [
            f"{args.tasks} tasks per cell, mock latency 0, one gateway + one worker process each, "
            f"polling every {args.poll_ms:g} ms",
            *table(results, args),
        ]
        baselines.close()
        if "aitasks" in systems and args.open_seconds:
            lines.append(half_peak(systems["aitasks"], results, args.open_seconds))
        if "aitasks" in systems and args.openai_requests:
            rate, latencies = run_loop(
                openai_sync(systems["aitasks"].base_urls[0], args.openai_requests,
                            args.openai_concurrency)
            )  # fmt: skip
            ms = [s * 1000 for s in latencies]
            lines.append(
                f"aitasks OpenAI sync POST /openai/v1/chat/completions, c={args.openai_concurrency}"
                f": {rate:.1f} req/s, p50 {percentile(ms, 0.5):.1f} ms, "
                f"p95 {percentile(ms, 0.95):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms"
            )
    print("\n".join(lines))
    if not args.no_record:
        command = "python -m benchmarks.e2e " + " ".join(sys.argv[1:])
        append_result("End to end: aitasks vs the seed vs Celery", command, lines)
    return 0


if __name__ == "__main__":
    print(f"e2e benchmark on {machine_summary()} at {datetime.now():%Y-%m-%d %H:%M}", flush=True)
    raise SystemExit(main())
