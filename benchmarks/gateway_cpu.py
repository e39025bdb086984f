"""The gateway's own CPU per request, apart from everything else: one aitasks gateway on PostgreSQL
and Redis with no worker, N submits then N polls of the tasks they made, at a fixed concurrency,
the gateway process's CPU time (from /proc) divided by N. On a shared machine this moves much less
than an end-to-end run's tasks/s: the figures issue 20's gateway levers were judged by.

    .venv/bin/python -m benchmarks.gateway_cpu --requests 2000 --rounds 2
    .venv/bin/python -m benchmarks.gateway_cpu --quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.harness import MODEL, running

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


One = Callable[[aiohttp.ClientSession, int], Awaitable[Any]]


async def drive(base_url: str, n: int, concurrency: int, one: One) -> list[Any]:
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(base_url) as client:

        async def each(i: int) -> Any:
            async with slots:
                return await one(client, i)

        return await asyncio.gather(*(each(i) for i in range(n)))


async def submit(client: aiohttp.ClientSession, i: int) -> str:
    body = {"prompt": f"p{i}", "model": MODEL}
    async with client.post("/v1/chat/completions", json=body) as response:
        assert response.status == 202, await response.text()
        task_id: str = (await response.json())["task_id"]
        return task_id


def poller(ids: list[str]) -> One:
    async def poll(client: aiohttp.ClientSession, i: int) -> None:
        async with client.get(f"/v1/tasks/{ids[i]}") as response:
            assert response.status == 200, await response.text()
            await response.read()

    return poll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="submits (and polls) a round")
    parser.add_argument("--rounds", type=int, default=2, help="the best round is shown")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="200 requests, one round")
    args = parser.parse_args()
    n, rounds = (200, 1) if args.quick else (args.requests, args.rounds)
    figures: dict[str, list[float]] = {}
    with running("aitasks", workers=0) as system:
        base_url, pid = system.base_urls[0], system.gateways[0].popen.pid
        asyncio.run(drive(base_url, 100, args.concurrency, submit))  # warm up
        for _ in range(rounds):
            cpu, start = cpu_seconds(pid), time.monotonic()
            ids = asyncio.run(drive(base_url, n, args.concurrency, submit))
            submitted_cpu, submitted_at = cpu_seconds(pid), time.monotonic()

            asyncio.run(drive(base_url, n, args.concurrency, poller(ids)))
            polled_cpu, polled_at = cpu_seconds(pid), time.monotonic()
            for name, value in (
                ("submit CPU us", (submitted_cpu - cpu) / n * 1e6),
                ("poll CPU us", (polled_cpu - submitted_cpu) / n * 1e6),
                ("submits/s", -n / (submitted_at - start)),
                ("polls/s", -n / (polled_at - submitted_at)),
            ):
                figures.setdefault(name, []).append(value)
    # The best round: least CPU, most requests a second (negated above so min() picks it).
    print(
        f"gateway, {n} requests a round at concurrency {args.concurrency}, best of {rounds}: "
        + ", ".join(f"{name} {abs(min(values)):.0f}" for name, values in figures.items())
    )


if __name__ == "__main__":
    main()
