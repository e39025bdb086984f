"""Waiting clients at a given concurrency: closed-loop clients that submit a task and wait for it
with `Prefer: wait=30` (or its SSE stream), one gateway + one worker, mock at zero latency.
Reports completed/s, latency, CPU per completed task of the gateway, the worker and Redis, and the
most Redis connections open and blocked while it ran: what sharing one reader among the gateway's
waiters (issue 20, lever 3) is judged by.

    .venv/bin/python -m benchmarks.waiters --tasks 1500 --concurrency 20 50 200

`--log-only` measures the event log alone, in this process, on a Redis of its own: each of C
readers waits for a task's log as `Prefer: wait` does (from the start, then after the last id
seen, until `done`) while an in-process writer appends what a worker would (PENDING at once,
then RUNNING, then SUCCESS and `done`); tasks/s and CPU per task of this process and of Redis.
The writer's part is the same code on both trees, so a difference is the readers'.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from aitasks.events.base import DONE, STATUS
from aitasks.events.redis import RedisEventLog
from benchmarks.gateway_cpu import cpu_seconds
from benchmarks.harness import (
    WAITERS,
    LoadResult,
    closed_loop,
    cpu_use,
    private_redis,
    run_loop,
    running,
)

# How often Redis' client counts are sampled during a run, in seconds.
SAMPLE_EVERY = 0.1


async def with_redis_clients(redis_url: str, load: Any) -> tuple[LoadResult, int, int]:
    """Run `load`, sampling Redis' connected and blocked clients: the result and the most of each
    (this sampler's own connection not counted)."""
    most = {"connected_clients": 0, "blocked_clients": 0}
    running_load = asyncio.ensure_future(load)
    async with Redis.from_url(redis_url) as redis:
        while not running_load.done():
            info = await redis.info("clients")
            for name in most:
                most[name] = max(most[name], int(info[name]))
            await asyncio.wait({running_load}, timeout=SAMPLE_EVERY)
    return await running_load, most["connected_clients"] - 1, most["blocked_clients"]


async def log_only(redis_url: str, redis_pid: int, tasks: int, concurrency: int) -> str:
    """C readers waiting on task logs that an in-process writer fills; see the module's doc."""
    log = RedisEventLog.from_url(redis_url, prefix=f"bench:{uuid.uuid4().hex[:8]}")
    runs: asyncio.Queue[str] = asyncio.Queue()
    counter = iter(range(tasks))

    async def worker() -> None:
        while True:
            task_id = await runs.get()
            await log.append(task_id, STATUS, {"status": "RUNNING"})
            await asyncio.sleep(0.001)
            await log.append_many(task_id, [(STATUS, {"status": "SUCCESS"}), (DONE, {})])

    async def reader() -> None:
        for i in counter:
            task_id = f"t{i}"
            await log.append(task_id, STATUS, {"status": "PENDING"})
            runs.put_nowait(task_id)
            after: str | None = None
            while True:
                events = await log.read(task_id, after=after, wait_seconds=5)
                if events:
                    after = events[-1].id
                    if events[-1].type == DONE:
                        break

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    await log.read("warm", after=None, wait_seconds=0)
    cpu, redis_cpu, started = time.process_time(), cpu_seconds(redis_pid), time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(concurrency)))
    took = time.perf_counter() - started
    cpu, redis_cpu = time.process_time() - cpu, cpu_seconds(redis_pid) - redis_cpu
    for w in workers:
        w.cancel()
    await log.close()
    return (
        f"log only c={concurrency}: tasks/s {tasks / took:.0f}, CPU us/task this process "
        f"{cpu / tasks * 1e6:.0f}, Redis {redis_cpu / tasks * 1e6:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1500, help="tasks per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[20, 50, 200])
    parser.add_argument("--mode", choices=["wait", "sse"], default="wait")
    parser.add_argument("--label", default="", help="a name for this tree, printed on each line")
    parser.add_argument("--log-only", action="store_true", help="the event log alone")
    args = parser.parse_args()
    if args.log_only:
        with private_redis() as (redis_url, redis_pid):
            for c in args.concurrency:
                print(args.label, asyncio.run(log_only(redis_url, redis_pid, args.tasks, c)))
        return
    with running("aitasks") as system:
        for c in args.concurrency:
            before = cpu_use(system)
            load = closed_loop(system.base_urls, args.tasks, c, WAITERS[args.mode](0))
            result, connected, blocked = run_loop(with_redis_clients(system.redis_url, load))
            after = cpu_use(system)
            assert result.failures == 0 and result.errors == 0, (result.failures, result.errors)
            per_task = {
                part: (after[part] - before[part]) / len(result.finished_at) * 1000
                for part in ("gateway", "worker", "redis")
            }
            print(
                f"{args.label} {args.mode} c={c}: completed/s {result.completed_per_s:.1f}, "
                f"p50 {result.ms(0.5):.1f} ms, p99 {result.ms(0.99):.1f} ms, CPU ms/task "
                + ", ".join(f"{part} {ms:.2f}" for part, ms in per_task.items())
                + f", Redis clients max {connected} (blocked {blocked})",
                flush=True,
            )


if __name__ == "__main__":
    main()
