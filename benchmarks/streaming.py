"""Streaming and sync latency through the gateway, on PostgreSQL + Redis with real processes.

1. Time to first token added by the system: a streamed chat's first text chunk, as the client sees
   it, minus the mock provider's own time to its first piece, through the seed API
   (`"stream": true`) and through the OpenAI-compatible API (`stream=True`).
2. The OpenAI-compatible synchronous path's added latency: `chat.completions.create` with a mock
   that answers at once, at 1 and at 100 concurrent clients.

    .venv/bin/python -m benchmarks.streaming --requests 200
    .venv/bin/python -m benchmarks.streaming --quick        # a smoke run; records nothing
    .venv/bin/python -m benchmarks.streaming --first-token-only --no-record   # the one-client lines

Needs PostgreSQL (AITASKS_TEST_POSTGRES, as the tests) and Redis at AITASKS_TEST_REDIS.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from aitasks.providers.base import ChatMessage
from aitasks.providers.mock import mock_reply
from benchmarks.harness import percentile, session
from benchmarks.report import append_result, machine_summary
from tests.support.processes import Process, free_port, wait_until_up
from tests.support.services import upgraded_stack

STREAM_LATENCY_MS = 1000
PROMPT = "How far away is the moon?"


def provider_first_piece_seconds() -> float:
    """The mock spreads its latency evenly over its words: its own first piece comes after one."""
    words = mock_reply([ChatMessage("user", PROMPT)]).split(" ")
    return STREAM_LATENCY_MS / 1000 / len(words)


async def first_token_seed(client: aiohttp.ClientSession) -> float:
    started = time.perf_counter()
    body = {"prompt": PROMPT, "model": "mock-chat", "stream": True}
    async with client.post("/v1/chat/completions", json=body) as response:
        async for raw in response.content:
            if raw.rstrip() == b"event: delta":
                return time.perf_counter() - started
    raise AssertionError("no delta")


async def first_token_openai(client: aiohttp.ClientSession) -> float:
    started = time.perf_counter()
    messages = [{"role": "user", "content": PROMPT}]
    body = {"model": "mock-chat", "stream": True, "messages": messages}
    async with client.post("/openai/v1/chat/completions", json=body) as response:
        async for raw in response.content:
            line = raw.decode()
            if (
                line.startswith("data: {")
                and '"content": "' in line
                and '"content": ""' not in line
            ):
                return time.perf_counter() - started
    raise AssertionError("no content chunk")


async def sync_completion(client: aiohttp.ClientSession) -> float:
    started = time.perf_counter()
    # The marker makes the mock answer at once: what is left is the system's own time.
    body = {
        "model": "mock-chat",
        "messages": [{"role": "user", "content": PROMPT + " [latency:0]"}],
    }
    async with client.post("/openai/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        await response.read()
    return time.perf_counter() - started


async def measure(
    base_url: str, probe: Callable[[aiohttp.ClientSession], Awaitable[float]], n: int, clients: int
) -> list[float]:
    async with session(base_url, clients + 10) as client:
        gate = asyncio.Semaphore(clients)

        async def one() -> float:
            async with gate:
                return await probe(client)

        await asyncio.gather(*(one() for _ in range(min(n, 10))))  # warm up
        return list(await asyncio.gather(*(one() for _ in range(n))))


def summary(label: str, seconds: list[float], minus: float = 0.0) -> str:
    ms = [(s - minus) * 1000 for s in seconds]
    return (
        f"{label}: n={len(ms)} median {statistics.median(ms):.1f} ms, "
        f"p95 {percentile(ms, 0.95):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="10 requests each; no record")
    parser.add_argument(
        "--first-token-only",
        action="store_true",
        help="only the one-client time to first token (for before/after runs); no record",
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.no_record = 10, True
    if args.first_token_only:
        args.no_record = True
    folder = Path(tempfile.mkdtemp(prefix="aitasks-bench-"))
    with upgraded_stack(
        folder,
        AITASKS_MOCK_LATENCY_MS=str(STREAM_LATENCY_MS),
        AITASKS_WORKER_CONCURRENCY="128",
        AITASKS_LOG_LEVEL="WARNING",
    ) as env:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        gateway = Process(["api", "--port", str(port)], env, folder)
        worker = Process(["worker"], env, folder)
        try:
            wait_until_up(base_url, gateway)
            time.sleep(2)  # the worker's start-up
            lines = asyncio.run(run(base_url, args.requests, args.first_token_only))
        finally:
            gateway.stop()
            worker.stop()
    print("\n".join(lines))
    if not args.no_record:
        command = "python -m benchmarks.streaming " + " ".join(sys.argv[1:])
        append_result("Streaming and sync latency", command, lines)
    return 0


async def run(base_url: str, n: int, first_token_only: bool = False) -> list[str]:
    own = provider_first_piece_seconds()
    few = max(20, n // 5)  # each streamed request takes the mock's full second
    lines = [
        f"mock's own time to first piece: {own * 1000:.1f} ms "
        f"(reply over {STREAM_LATENCY_MS} ms); figures below are what the system adds",
        summary(
            "first token added, seed API stream, 1 client",
            await measure(base_url, first_token_seed, few, 1),
            own,
        ),
        summary(
            "first token added, OpenAI stream, 1 client",
            await measure(base_url, first_token_openai, few, 1),
            own,
        ),
    ]
    if first_token_only:
        return lines
    lines.append(
        summary(
            "first token added, OpenAI stream, 100 clients",
            await measure(base_url, first_token_openai, n, 100),
            own,
        )
    )
    for clients in (1, 100):
        lines.append(
            summary(
                f"sync chat.completions (instant mock), {clients} client(s)",
                await measure(base_url, sync_completion, n, clients),
            )
        )
    return lines


if __name__ == "__main__":
    print(f"streaming benchmark on {machine_summary()}", flush=True)
    raise SystemExit(main())
