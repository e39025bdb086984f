"""Where a task's added latency goes, stage by stage: lone tasks one after another, then an open
loop at a fixed rate (half of peak by default), one gateway + one worker, mock at zero latency,
every client waiting with `Prefer: wait`.

    .venv/bin/python -m benchmarks.latency --lone 200 --rate 288 --seconds 10
    .venv/bin/python -m benchmarks.latency --probe       # with GC pauses and event-loop stalls

Each task's moments, all on the machine's wall clock (one machine, one clock):

    due        the open loop's schedule says it should be sent (lone: = sent)
    sent       the client sends the submit
    created    the gateway stamps the task (`created_at`, just before its group commit)
    pending    its first event (`PENDING`) is in its log: the commit is done (event ids: ms)
    accepted   the client has the 202
    claimed    the worker's claim flush starts (`started_at`)
    running    its `RUNNING` event is in its log (after the claim, with the reply's text)
    finishing  the worker's finish flush starts (`finished_at`)
    done       its `done` event is in its log: the finish is committed
    seen       the client has the finished task (the wait's answer)

The stages between them are printed with their p50 / p90 / p99 / mean. Event ids have millisecond
resolution, so a stage that ends or starts at one is known to a millisecond (its mean over many
tasks is still fair). With --probe every server process loads a `sitecustomize` (from a folder of
this run's) that records garbage collections (generation, CPU time of the pause, and the objects a
full one walked) and its event loop's lateness (a timer every 5 ms: how late each fires; uvloop's
timers have 1 ms resolution).

The client is measured too: how late it sent against the schedule (`due -> sent`), and how late
its own event loop ran its timers during the run; a client that cannot keep up shows there, not as
the server's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis

from aitasks.redis_keys import events_key
from benchmarks.harness import (
    MODEL,
    FailedAnswer,
    delta,
    expect,
    percentile,
    redis_calls,
    run_loop,
    running,
    sql,
)

PREFIX = "aitasks"  # the services' default AITASKS_REDIS_PREFIX
MOMENTS = ("due", "sent", "created", "pending", "accepted", "claimed", "running", "finishing",
           "done", "seen")  # fmt: skip
STAGES = [
    ("client lag (due -> sent)", "due", "sent"),
    ("gateway in (sent -> created)", "sent", "created"),
    ("commit (created -> pending)", "created", "pending"),
    ("answer (pending -> accepted)", "pending", "accepted"),
    ("to the worker (pending -> claimed)", "pending", "claimed"),
    ("claim (claimed -> running)", "claimed", "running"),
    ("run (running -> finishing)", "running", "finishing"),
    ("finish (finishing -> done)", "finishing", "done"),
    ("back to client (done -> seen)", "done", "seen"),
    ("added, from sent", "sent", "seen"),
    ("added, from due", "due", "seen"),
]

PROBE = '''
"""Written by benchmarks.latency: GC pauses and event-loop lateness of this process."""
import atexit, gc, json, os, sys, threading, time

_folder = os.environ["AITASKS_LATENCY_PROBE"]
_gc, _lags, _started = [], [], [0.0]


def _on_gc(phase, info):
    # CPU time (the thread's), not wall time: on a busy machine a collection may be preempted.
    if phase == "start":
        _started[0] = time.thread_time()
    elif info["generation"] < 2:
        _gc.append((time.time(), info["generation"], time.thread_time() - _started[0], 0))
    else:  # with what a full collection walked (counted after it: not part of its pause)
        pause = time.thread_time() - _started[0]
        _gc.append((time.time(), 2, pause, len(gc.get_objects(2))))


gc.callbacks.append(_on_gc)


def _watch(loop, period=0.005):
    def tick(expected):
        now = loop.time()
        _lags.append((time.time(), now - expected))
        loop.call_at(now + period, tick, now + period)

    loop.call_soon(tick, loop.time())
    return loop


try:
    import uvloop

    _new = uvloop.new_event_loop
    uvloop.new_event_loop = lambda: _watch(_new())
except ImportError:
    pass


def _dump():
    path = os.path.join(_folder, f"{os.getpid()}.json")
    with open(path + ".new", "w") as out:
        json.dump({"argv": sys.argv, "gc": list(_gc), "lags": list(_lags)}, out)
    os.replace(path + ".new", path)


def _dumping():
    # Every second: uvicorn ends its process by the signal it caught, so atexit never runs.
    while True:
        time.sleep(1)
        _dump()


threading.Thread(target=_dumping, daemon=True).start()
atexit.register(_dump)
'''


@dataclass
class Record:
    """One task's client-side moments (wall clock, seconds)."""

    due: float
    sent: float = 0.0
    accepted: float = 0.0
    seen: float = 0.0
    task_id: str = ""
    ok: bool = False


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    client_lags: list[float] = field(default_factory=list)  # the client loop's timer lateness
    started: float = 0.0
    ended: float = 0.0


async def one(client: aiohttp.ClientSession, record: Record, prompt: str) -> None:
    record.sent = time.time()
    try:
        body = {"prompt": prompt, "model": MODEL}
        async with client.post("/v1/chat/completions", json=body) as response:
            await expect(response, 202)
            record.task_id = (await response.json())["task_id"]
        record.accepted = time.time()
        while True:
            headers = {"Prefer": "wait=30"}
            async with client.get(f"/v1/tasks/{record.task_id}", headers=headers) as response:
                await expect(response, 200)
                task = await response.json()
            if task["status"] in ("SUCCESS", "FAILED", "CANCELLED", "EXPIRED"):
                break
        record.seen = time.time()
        record.ok = task["status"] == "SUCCESS"
    except (aiohttp.ClientError, TimeoutError, FailedAnswer):
        record.ok = False


async def watch_loop(run: Run, period: float = 0.005) -> None:
    """How late this process's timers fire while the load runs: the client's own stalls."""
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + period
        await asyncio.sleep(period)
        run.client_lags.append(loop.time() - expected)


async def warmed(base_url: str, connections: int) -> aiohttp.ClientSession:
    """A client with `connections` connections open already, so no task pays a TCP handshake
    (idle ones are dropped before uvicorn's 5 s keep-alive runs out)."""
    connector = aiohttp.TCPConnector(limit=connections + 10, keepalive_timeout=4.0)
    client = aiohttp.ClientSession(
        base_url, connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    )

    async def ping() -> None:
        async with client.get("/healthz") as response:
            await response.read()

    await asyncio.gather(*(ping() for _ in range(connections)))
    return client


async def lone(base_url: str, n: int, gap: float) -> Run:
    """`n` tasks one at a time, `gap` seconds apart: nothing else in the system meanwhile."""
    run = Run(started=time.time())
    client = await warmed(base_url, 2)
    watcher = asyncio.create_task(watch_loop(run))
    try:
        for i in range(n):
            record = Record(due=time.time())
            await one(client, record, f"lone #{i}")
            run.records.append(record)
            await asyncio.sleep(gap)
    finally:
        watcher.cancel()
        await client.close()
    run.ended = time.time()
    return run


async def open_loop(base_url: str, rate: float, seconds: float, connections: int) -> Run:
    """Tasks due at a fixed `rate` for `seconds`, each started when due whatever the others do;
    one scheduler starts them (not thousands of sleeping coroutines)."""
    run = Run()
    client = await warmed(base_url, connections)
    watcher = asyncio.create_task(watch_loop(run))
    n = int(rate * seconds)
    started = time.perf_counter()
    wall = time.time() - started  # perf_counter -> wall clock
    run.started = started + wall
    tasks: set[asyncio.Task[None]] = set()
    try:
        for i in range(n):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            record = Record(due=due + wall)
            run.records.append(record)
            task = asyncio.create_task(one(client, record, f"open #{i}"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        watcher.cancel()
        await client.close()
    run.ended = time.time()
    return run


def server_moments(
    database_url: str, redis_url: str, ids: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Each task's server-side moments: its row's timestamps and its events' ids."""
    moments: dict[str, dict[str, float]] = {i: {} for i in ids}
    quoted = ",".join(f"'{i}'" for i in ids)
    rows = sql(
        database_url,
        f"SELECT id, created_at, started_at, finished_at FROM tasks WHERE id IN ({quoted})",
    )
    for task_id, created, started, finished in rows:
        m = moments[task_id]
        m["created"], m["claimed"] = created.timestamp(), started.timestamp()
        m["finishing"] = finished.timestamp()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for task_id in ids:
            pipe.xrange(events_key(PREFIX, task_id))
        for task_id, entries in zip(ids, pipe.execute(), strict=True):
            m = moments[task_id]
            for entry_id, fields in entries:
                at = int(entry_id.split("-")[0]) / 1000
                kind, data = fields["type"], json.loads(fields["data"])
                if kind == "status" and data.get("status") == "PENDING":
                    m.setdefault("pending", at)
                elif kind == "status" and data.get("status") == "RUNNING":
                    m.setdefault("running", at)
                elif kind == "done":
                    m["done"] = at
    finally:
        client.close()
    return moments


def stage_table(run: Run, moments: dict[str, dict[str, float]], label: str) -> list[str]:
    lines = [f"{label}: {sum(r.ok for r in run.records)} of {len(run.records)} tasks succeeded",
             f"  {'stage':<36}{'p50':>8}{'p90':>8}{'p99':>8}{'mean':>8}  (ms)"]  # fmt: skip
    for name, start, end in STAGES:
        values = []
        for r in run.records:
            if not r.ok:
                continue
            at = {"due": r.due, "sent": r.sent, "accepted": r.accepted, "seen": r.seen,
                  **moments.get(r.task_id, {})}  # fmt: skip
            if start in at and end in at:
                values.append((at[end] - at[start]) * 1000)
        if values:
            mean = sum(values) / len(values)
            lines.append(
                f"  {name:<36}{percentile(values, 0.5):8.2f}{percentile(values, 0.9):8.2f}"
                f"{percentile(values, 0.99):8.2f}{mean:8.2f}"
            )
    lags = [lag * 1000 for lag in run.client_lags]
    lines.append(
        f"  client event loop: timers late p50 {percentile(lags, 0.5):.2f} ms, "
        f"p99 {percentile(lags, 0.99):.2f} ms, worst {max(lags, default=0):.2f} ms"
    )
    return lines


def probe_table(folder: Path, runs: dict[str, Run]) -> list[str]:
    """GC pauses and event-loop lateness of each server process, within each run's window."""
    lines = []
    for path in sorted(folder.glob("*.json")):
        found = json.loads(path.read_text())
        command = found["argv"][1] if len(found["argv"]) > 1 else ""
        if command not in ("api", "worker"):
            continue  # `aitasks db upgrade`, before the runs
        name = "gateway" if command == "api" else "worker"
        for label, run in runs.items():
            pauses = [
                (gen, pause * 1000)
                for at, gen, pause, _ in found["gc"]
                if run.started <= at <= run.ended
            ]
            heap = max(
                (n for at, _, _, n in found["gc"] if run.started <= at <= run.ended), default=0
            )
            lags = [lag * 1000 for at, lag in found["lags"] if run.started <= at <= run.ended]
            by_gen = {g: [p for gen, p in pauses if gen == g] for g in (0, 1, 2)}
            gcs = ", ".join(
                f"gen{g} {len(p)}x max {max(p, default=0):.2f} ms sum {sum(p):.1f} ms"
                for g, p in by_gen.items()
            )
            lines.append(
                f"  {label:<5} {name:<8} GC: {gcs}; loop late p50 {percentile(lags, 0.5):.2f} "
                f"p99 {percentile(lags, 0.99):.2f} worst {max(lags, default=0):.2f} ms "
                f"(>5 ms: {sum(lag > 5 for lag in lags)}x); objects in the oldest generation {heap}"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lone", type=int, default=200, help="lone tasks first (0 skips)")
    parser.add_argument("--gap-ms", type=float, default=20, help="pause between lone tasks")
    parser.add_argument("--rate", type=float, default=288, help="open loop: tasks per second")
    parser.add_argument(
        "--seconds", type=float, default=10, help="open loop: for how long (0 skips)"
    )
    parser.add_argument("--connections", type=int, default=30, help="open loop: warmed conns")
    parser.add_argument("--worker-concurrency", type=int)
    parser.add_argument(
        "--synchronous-commit", choices=["on", "off"], default="on",
        help="off: a diagnosis of what the commits' WAL flushes cost (not a configuration)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="5 lone, 20/s for 1 s, probed")
    parser.add_argument("--probe", action="store_true", help="GC and event-loop stalls per process")
    args = parser.parse_args()
    if args.quick:
        args.lone, args.rate, args.seconds, args.probe = 5, 20, 1, True
    folder = Path(tempfile.mkdtemp(prefix="aitasks-latency-"))
    extra: dict[str, str] = {}
    if args.probe:
        (folder / "sitecustomize.py").write_text(PROBE)
        # Ahead of what is there already (a baseline tree's src, when measuring one).
        path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
        extra = {"PYTHONPATH": path, "AITASKS_LATENCY_PROBE": str(folder)}
    runs: dict[str, Run] = {}
    lines: list[str] = []
    with running(
        "aitasks",
        worker_concurrency=args.worker_concurrency,
        extra_env=extra,
        database_settings={"synchronous_commit": "off"} if args.synchronous_commit == "off" else {},
    ) as system:
        base_url = system.base_urls[0]
        calls: dict[str, dict[str, int]] = {}
        if args.lone:
            before = redis_calls(system.redis_url)
            runs["lone"] = run_loop(lone(base_url, args.lone, args.gap_ms / 1000))
            calls["lone"] = delta(before, redis_calls(system.redis_url))
        if args.seconds:
            before = redis_calls(system.redis_url)
            runs["open"] = run_loop(open_loop(base_url, args.rate, args.seconds, args.connections))
            calls["open"] = delta(before, redis_calls(system.redis_url))
        if args.probe:
            time.sleep(1.5)  # each process's last dump covers the runs
        for label, run in runs.items():
            ids = [r.task_id for r in run.records if r.task_id]
            moments = server_moments(system.database_url, system.redis_url, ids)
            title = (
                label if label == "lone" else f"open loop {args.rate:g}/s for {args.seconds:g} s"
            )
            lines += stage_table(run, moments, title)
            per_task = sorted(calls[label].items(), key=lambda kv: -kv[1])
            lines.append(
                "  Redis calls per task: "
                + ", ".join(f"{name} {n / len(run.records):.2f}" for name, n in per_task if n)
            )
    if args.probe:  # the processes have written theirs on stopping
        lines += ["server processes (within each run):", *probe_table(folder, runs)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
