"""Fair under load: tenant A's large batch, then tenant B's interactive chat turns, on PostgreSQL
and Redis with 2 workers and a mock of fixed latency. B's wait (submit -> started, the server's own
timestamps) is measured first on the idle system, then while A's batch runs, with the queues
fair (lanes and fair share) and then first in, first out (`AITASKS_QUEUE_ORDER=fifo`, a fresh
system) for comparison; A's batch must complete in both.

B is --users people, each sending --turns / --users turns one after another in a conversation of
their own (`Prefer: wait`, so each is interactive), the next as soon as the last is answered. The
mock takes a fixed --latency-ms and each worker has --worker-concurrency slots, so the batch is
limited by slots (as one waiting on a provider is), not by this machine's CPU.

    .venv/bin/python -m benchmarks.fairness                      # 20,000 lines, 50 turns
    .venv/bin/python -m benchmarks.fairness --quick              # a smoke run; records nothing
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from typing import Any

import aiohttp
import httpx

from benchmarks.harness import System, _aitasks, percentile, run_loop, running
from benchmarks.report import append_result, machine_summary
from tests.support.processes import run_cli

MODEL = "mock-chat"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=20_000, help="lines of A's batch")
    parser.add_argument("--turns", type=int, default=50, help="B's interactive turns")
    parser.add_argument("--users", type=int, default=10, help="B's people, each a conversation")
    parser.add_argument("--latency-ms", type=int, default=400, help="the mock's fixed latency")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=32)
    parser.add_argument("--orders", nargs="+", choices=["fair", "fifo"], default=["fair", "fifo"])
    parser.add_argument("--quick", action="store_true", help="tiny run; no record")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.turns, args.users, args.no_record = 400, 10, 5, True
    return args


def _key(system: System, name: str) -> dict[str, str]:
    made = run_cli(["keys", "create", "--name", name], system.env, system.folder)
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}


def _start_workers(system: System, count: int, concurrency: int, key: dict[str, str]) -> None:
    for _ in range(count):
        system.workers.append(_aitasks(system, ["worker", "--concurrency", str(concurrency)]))
    deadline = time.monotonic() + 60
    status = f"{system.base_urls[0]}/v1/status"
    while len(httpx.get(status, headers=key).json()["workers"]) < count:
        assert time.monotonic() < deadline, "the workers did not come up"
        time.sleep(0.1)


def _seconds(task: dict[str, Any]) -> float:
    started, created = task["started_at"], task["created_at"]
    return (datetime.fromisoformat(started) - datetime.fromisoformat(created)).total_seconds()


async def b_turns(base_url: str, key: dict[str, str], turns: int, users: int) -> list[float]:
    """B's turns: each user's one after another; every turn's wait from submit to started."""
    waits: list[float] = []

    async def user(client: aiohttp.ClientSession, count: int) -> None:
        conversation = None
        for n in range(count):
            body = {"prompt": f"question {n}", "model": MODEL, "conversation_id": conversation}
            async with client.post(
                "/v1/chat/completions", json=body, headers={**key, "Prefer": "wait=60"}
            ) as answer:
                assert answer.status in (200, 202), await answer.text()
                task = await answer.json()
            while task["status"] in ("PENDING", "RUNNING"):  # past the longest wait: again
                path = f"/v1/tasks/{task['task_id']}"
                async with client.get(path, headers={**key, "Prefer": "wait=60"}) as answer:
                    task = await answer.json()
            assert task["status"] == "SUCCESS" and task["priority"] == "interactive", task
            conversation = task["conversation_id"]
            waits.append(_seconds(task))

    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(base_url, timeout=timeout) as client:
        shares = [turns // users + (1 if i < turns % users else 0) for i in range(users)]
        await asyncio.gather(*(user(client, n) for n in shares if n))
    return waits


def submit_batch(base_url: str, key: dict[str, str], lines: int) -> tuple[str, float]:
    requests = [{"prompt": f"summarise document {n}", "model": MODEL} for n in range(lines)]
    started = time.monotonic()
    answer = httpx.post(f"{base_url}/v1/batches", json=requests, headers=key, timeout=120)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"], time.monotonic() - started


def until_running(base_url: str, key: dict[str, str], batch_id: str, slots: int) -> None:
    """Until A's batch fills every worker slot (the system is loaded)."""
    deadline = time.monotonic() + 60
    while True:
        counts = httpx.get(f"{base_url}/v1/batches/{batch_id}", headers=key).json()["counts"]
        started = counts["running"] + counts["succeeded"] + counts["failed"]
        if counts["running"] >= slots * 0.9 or started >= min(2 * slots, counts["total"]):
            return
        assert time.monotonic() < deadline, counts
        time.sleep(0.05)


def until_ended(base_url: str, key: dict[str, str], batch_id: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        batch: dict[str, Any] = httpx.get(
            f"{base_url}/v1/batches/{batch_id}", headers=key, timeout=30
        ).json()
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.5)


def describe(waits: list[float]) -> str:
    return (
        f"p50 {percentile(waits, 0.5) * 1000:.0f} ms, p99 {percentile(waits, 0.99) * 1000:.0f} ms, "
        f"max {max(waits) * 1000:.0f} ms ({len(waits)} turns)"
    )


def measure(args: argparse.Namespace, order: str) -> tuple[list[float], list[float], str]:
    """B's waits idle and under A's batch with the queues in `order`, and how A's batch went."""
    env = {"AITASKS_AUTH": "on", "AITASKS_QUEUE_ORDER": order, "AITASKS_MAX_QUEUE_DEPTH": "1000000"}
    with running("aitasks", workers=0, latency_ms=args.latency_ms, extra_env=env) as system:
        a, b = _key(system, "tenant-a"), _key(system, "tenant-b")
        _start_workers(system, args.workers, args.worker_concurrency, b)
        base = system.base_urls[0]
        run_loop(b_turns(base, b, args.users, args.users))  # warm: connections, plans
        idle = run_loop(b_turns(base, b, args.turns, args.users))
        batch_id, accept = submit_batch(base, a, args.batch)
        submitted = time.monotonic()
        # Batch work fills all but a quarter of each worker's slots (AITASKS_BATCH_HEADROOM).
        share = args.worker_concurrency - args.worker_concurrency // 4
        until_running(base, a, batch_id, args.workers * share)
        loaded = run_loop(b_turns(base, b, args.turns, args.users))
        batch = until_ended(base, a, batch_id, within=max(600, args.batch / 10))
        took = time.monotonic() - submitted
    counts = batch["counts"]
    assert batch["status"] == "completed" and counts["succeeded"] == args.batch, batch
    done = (
        f"A's batch of {args.batch}: accepted in {accept:.1f} s, completed in {took:.0f} s "
        f"({args.batch / took:.0f} lines/s), {counts['succeeded']} answered"
    )
    return idle, loaded, done


def main() -> int:
    args = parse_args()
    lines = [
        f"PostgreSQL + Redis, 1 gateway, {args.workers} workers x {args.worker_concurrency} slots, "
        f"mock latency {args.latency_ms} ms; A: a {args.batch}-line batch; B: {args.turns} "
        f"interactive turns ({args.users} people, turns one after another)"
    ]
    idle_p99 = 0.0
    for order in args.orders:
        idle, loaded, batch = measure(args, order)
        idle_p99 = idle_p99 or percentile(idle, 0.99)
        ratio = percentile(loaded, 0.99) / percentile(idle, 0.99)
        for line in (
            f"{order}: B idle:            {describe(idle)}",
            f"{order}: B under A's batch: {describe(loaded)}; p99 {ratio:.1f}x idle",
            f"{order}: {batch}",
        ):
            print(line, flush=True)
            lines.append(line)
    print(f"machine: {machine_summary()}")
    if not args.no_record:
        command = "python -m benchmarks.fairness " + " ".join(sys.argv[1:])
        append_result("Fairness: a batch beside interactive turns", command, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
