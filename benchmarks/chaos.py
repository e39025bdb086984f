"""Chaos run: thousands of tasks through real processes while workers are SIGKILLed and Redis is
restarted empty, over and over. Prints what became of every task and how long recovery took, and
appends the run to benchmarks/RESULTS.md.

    .venv/bin/python -m benchmarks.chaos --tasks 2000 --workers 3 --latency-ms 400

Needs PostgreSQL (AITASKS_TEST_POSTGRES, default postgresql://postgres@127.0.0.1:5432/postgres,
where it makes a database of its own) and `redis-server` on the PATH (it runs one of its own).
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from benchmarks.report import append_result, machine_summary
from tests.support.flows import TERMINAL
from tests.support.processes import (
    Background,
    Process,
    empty_redis,
    free_port,
    run_cli,
    service_env,
    wait_until_up,
)
from tests.support.services import fresh_postgres_database, query


@dataclass
class Fault:
    kind: str  # "worker killed" | "redis restarted"
    at: float  # epoch seconds
    # For a killed worker: the tasks it was running, which must be run again elsewhere.
    orphans: list[str] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16, help="per worker")
    parser.add_argument("--latency-ms", type=int, default=400, help="the mock's reply time")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between kills")
    parser.add_argument("--redis-every", type=int, default=3, help="every Nth fault hits Redis")
    parser.add_argument("--lease-seconds", type=float, default=2.0)
    parser.add_argument("--limit-seconds", type=float, default=600.0)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    return parser.parse_args()


def running_on(database_url: str, pid: int) -> list[str]:
    rows = query(
        database_url,
        f"SELECT id FROM tasks WHERE status = 'RUNNING' AND worker_id LIKE '%-{pid}-%'",
    )
    return [row[0] for row in rows]


def main() -> int:
    args = parse_args()
    folder = Path(tempfile.mkdtemp(prefix="aitasks-chaos-"))
    redis = empty_redis()
    redis.start()
    with fresh_postgres_database() as database_url:
        env = service_env(
            DATABASE_URL=database_url,
            REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
            AITASKS_DATA_DIR=str(folder / "data"),
            AITASKS_MOCK_LATENCY_MS=str(args.latency_ms),
            AITASKS_WORKER_CONCURRENCY=str(args.concurrency),
            AITASKS_LEASE_SECONDS=str(args.lease_seconds),
            AITASKS_RECONCILE_SECONDS="1",
            AITASKS_MAX_QUEUE_DEPTH=str(args.tasks * 2),
        )
        assert run_cli(["db", "upgrade"], env, folder).returncode == 0
        port = free_port()
        gateway = Process(["api", "--port", str(port)], env, folder)
        base_url = f"http://127.0.0.1:{port}"
        wait_until_up(base_url, gateway)
        workers = [Process(["worker"], env, folder) for _ in range(args.workers)]
        for worker in workers:
            worker.wait_for_log("on queues")
        try:
            return run(args, base_url, database_url, env, folder, redis, workers)
        finally:
            for process in [gateway, *workers]:
                process.stop()
            redis.kill()


def run(
    args: argparse.Namespace,
    base_url: str,
    database_url: str,
    env: dict[str, str],
    folder: Path,
    redis: Background,
    workers: list[Process],
) -> int:
    acknowledged: list[str] = []
    refused: Counter[int] = Counter()
    submitting = True

    def submit_all() -> None:
        nonlocal submitting
        with httpx.Client(base_url=base_url, timeout=30) as client:

            def one(n: int) -> None:
                response = client.post(
                    "/v1/chat/completions", json={"prompt": f"chaos {n}", "model": "mock-chat"}
                )
                if response.status_code == 202:
                    acknowledged.append(response.json()["task_id"])
                else:
                    refused[response.status_code] += 1

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(one, range(args.tasks)))
        submitting = False

    started = time.time()
    submitter = threading.Thread(target=submit_all)
    submitter.start()
    faults: list[Fault] = []
    deadline = time.monotonic() + args.limit_seconds
    while time.monotonic() < deadline:
        time.sleep(args.kill_every)
        done = query(
            database_url, "SELECT count(*) FROM tasks WHERE status IN ('SUCCESS','FAILED')"
        )[0][0]
        if not submitting and done >= len(acknowledged):
            break
        if (len(faults) + 1) % args.redis_every == 0:
            redis.kill()
            faults.append(Fault("redis restarted", time.time()))
            time.sleep(0.5)
            redis.start()
        else:
            victim = random.choice(workers)
            orphans = running_on(database_url, victim.popen.pid)
            victim.stop(signal.SIGKILL)
            faults.append(Fault("worker killed", time.time(), orphans))
            workers.remove(victim)
            workers.append(Process(["worker"], env, folder))
        print(f"  {faults[-1].kind} at +{faults[-1].at - started:.1f}s, {done} done", flush=True)
    submitter.join()
    return summarise(args, database_url, acknowledged, refused, faults, started)


def summarise(
    args: argparse.Namespace,
    database_url: str,
    acknowledged: list[str],
    refused: Counter[int],
    faults: list[Fault],
    started: float,
) -> int:
    # Let the last fault's work finish.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        unfinished = query(
            database_url, "SELECT count(*) FROM tasks WHERE status IN ('PENDING','RUNNING')"
        )[0][0]
        if unfinished == 0:
            break
        time.sleep(0.5)
    rows = query(
        database_url, "SELECT id, status, error, attempts, finished_at, started_at FROM tasks"
    )
    by_id = {row[0]: row for row in rows}
    finished_at = {row[0]: row[4] for row in rows}
    started_at = sorted(row[5].timestamp() for row in rows if row[5])
    replies = dict(
        query(
            database_url,
            "SELECT task_id, count(*) FROM messages WHERE role = 'assistant' GROUP BY task_id",
        )
    )
    failed = Counter((r[2] or {}).get("type", "?") for r in rows if r[1] == "FAILED")
    lost = [t for t in acknowledged if t not in by_id or by_id[t][1] not in TERMINAL]
    doubled = [t for t, n in replies.items() if n > 1]
    elapsed = max((f.timestamp() for f in finished_at.values() if f), default=time.time()) - started

    recoveries = []
    for fault in faults:
        if fault.kind == "worker killed" and fault.orphans:
            ends = [finished_at[t].timestamp() for t in fault.orphans if finished_at.get(t)]
            if ends:
                recoveries.append(("worker killed", max(ends) - fault.at))
        elif fault.kind == "redis restarted":
            # Work flows again when the first task is taken after Redis came back.
            later = [s for s in started_at if s > fault.at + 0.5]
            if later:
                recoveries.append(("redis restarted", later[0] - fault.at))

    lines = [
        f"submitted {len(acknowledged)} (refused {dict(refused) or 0}), "
        f"succeeded {sum(1 for r in rows if r[1] == 'SUCCESS')}, "
        f"failed {dict(failed) or 0}, lost {len(lost)}, replies doubled {len(doubled)}, "
        f"run more than once {sum(1 for r in rows if r[3] > 1)}",
        f"faults: {Counter(f.kind for f in faults)}; wall time {elapsed:.1f}s; "
        f"completed/s {len(rows) / elapsed:.1f}",
    ]
    for kind in ("worker killed", "redis restarted"):
        times = [t for k, t in recoveries if k == kind]
        if times:
            lines.append(
                f"recovery after {kind} (n={len(times)}): median {statistics.median(times):.2f}s, "
                f"max {max(times):.2f}s"
            )
    print("\n".join(lines))
    if not args.no_record:
        command = "python -m benchmarks.chaos " + " ".join(sys.argv[1:])
        append_result("Chaos: kills and restarts under load", command, lines)
    return 0 if not lost and not doubled else 1


if __name__ == "__main__":
    print(f"chaos run on {machine_summary()} at {datetime.now():%Y-%m-%d %H:%M}", flush=True)
    raise SystemExit(main())
