"""Retention under load: a PostgreSQL database filled with finished tasks (bulk COPY, not the API:
conversations of five turns, a user and an assistant message per turn, a settled webhook delivery
for one task in five), most of them past `AITASKS_TASK_RETENTION_DAYS`; then the purge runs, as
the reconciler runs it (batches of 500 rows, each one short transaction), while a small load of
submits and polls goes on through a gateway and a worker. Prints how long the purge took, its
longest single statement (timed at the driver), what the load saw (latency, errors) before and
during it, and checks that exactly what should go went.

    .venv/bin/python -m benchmarks.purge --tasks 100000
    .venv/bin/python -m benchmarks.purge --quick            # records nothing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from sqlalchemy import event

from aitasks.config import Settings
from aitasks.lifecycle.retention import BATCH, purge
from aitasks.services import Services
from benchmarks.harness import get_json, percentile, run_loop, running, session, sql
from benchmarks.report import append_result, machine_summary

TURNS = 5  # tasks (turns) per conversation
OLD_SHARE = 0.8  # of the tasks, finished past the retention
RETENTION_DAYS = 30


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="finished tasks to fill")
    parser.add_argument("--clients", type=int, default=4, help="submit-and-poll clients")
    parser.add_argument("--quick", action="store_true", help="2,000 tasks; records nothing")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.clients, args.no_record = 2_000, 2, True
    return args


async def fill(database_url: str, tasks: int) -> tuple[int, str]:
    """COPY `tasks` finished tasks into the database; returns how many are past the retention,
    and what they take on disk."""
    now = datetime.now(UTC)
    old = int(tasks * OLD_SHARE)
    conversations, task_rows, messages, deliveries = [], [], [], []
    for c in range((tasks + TURNS - 1) // TURNS):
        conversation = secrets.token_hex(16)
        first = c * TURNS
        turns = min(TURNS, tasks - first)
        # A conversation's tasks are all old or all recent; recent ones finished yesterday.
        age = timedelta(days=45 + c % 30) if first < old else timedelta(days=1)
        at = now - age
        conversations.append((conversation, "local", f"chat {c}", turns, at, at))
        for turn in range(1, turns + 1):
            task = secrets.token_hex(16)
            text = f"reply {turn} of chat {c} " * 8
            task_rows.append(
                (task, "local", conversation, turn, "chat", "mock-chat", "mock", "mock",
                 f"prompt {turn}", "SUCCESS", json.dumps({"text": text}), 1, at, at, at, at)
            )  # fmt: skip
            messages.append((conversation, turn, "user", f"prompt {turn}", "[]", task, at))
            messages.append((conversation, turn, "assistant", text, "[]", task, at))
            if (first + turn) % 5 == 0:
                deliveries.append(
                    (secrets.token_hex(20), task, "task.succeeded", "http://example.test/hook",
                     "delivered", 1, at, at, at)
                )  # fmt: skip
    connection = await asyncpg.connect(database_url)
    try:
        await connection.copy_records_to_table(
            "conversations", records=conversations,
            columns=["id", "tenant", "title", "turns", "created_at", "updated_at"],
        )  # fmt: skip
        await connection.copy_records_to_table(
            "tasks", records=task_rows,
            columns=["id", "tenant", "conversation_id", "turn", "kind", "model", "queue",
                     "provider", "prompt", "status", "result", "attempts", "created_at",
                     "updated_at", "started_at", "finished_at"],
        )  # fmt: skip
        await connection.copy_records_to_table(
            "messages", records=messages,
            columns=["conversation_id", "turn", "role", "content", "files", "task_id",
                     "created_at"],
        )  # fmt: skip
        await connection.copy_records_to_table(
            "webhook_deliveries", records=deliveries,
            columns=["id", "task_id", "event", "url", "status", "attempts", "next_attempt_at",
                     "created_at", "delivered_at"],
        )  # fmt: skip
        await connection.execute("ANALYZE")
        sizes = await connection.fetch(
            "SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class "
            "WHERE relname = ANY($1::text[])",
            ["tasks", "messages", "conversations", "webhook_deliveries"],
        )
    finally:
        await connection.close()
    expired = sum(1 for row in task_rows if row[-1] < now - timedelta(days=RETENTION_DAYS))
    per_thousand = ", ".join(
        f"{row['relname']} {row['bytes'] / tasks * 1000 / 2**20:.2f} MiB" for row in sizes
    )
    return expired, f"on disk per 1,000 tasks (with indexes): {per_thousand}"


@dataclass
class Load:
    """Submit-and-poll clients: each submits a chat turn, polls it to its end, and again."""

    base_url: str
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (ended at, seconds)
    errors: list[str] = field(default_factory=list)

    async def client(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with http.post(
                    "/v1/chat/completions", json={"prompt": "hello", "model": "mock-chat"}
                ) as answer:
                    if answer.status != 202:
                        self.errors.append(f"submit {answer.status}: {await answer.text()}")
                        continue
                    task_id = (await answer.json())["task_id"]
                while True:
                    task = await get_json(http, f"/v1/tasks/{task_id}")
                    if task["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
                        break
                    await asyncio.sleep(0.02)
                if task["status"] != "SUCCESS":
                    self.errors.append(f"task {task_id} {task['status']}: {task.get('error')}")
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.latencies.append((time.perf_counter(), time.perf_counter() - started))

    def between(self, start: float, end: float) -> list[float]:
        return [s * 1000 for at, s in self.latencies if start <= at < end]


class StatementClock:
    """Times every statement the purge's engine runs, at the driver."""

    def __init__(self) -> None:
        self.longest, self.longest_sql, self.count = 0.0, "", 0

    def attach(self, services: Services) -> None:
        engine = services.db.engine.sync_engine

        @event.listens_for(engine, "before_cursor_execute")
        def _start(_c: Any, _cur: Any, _s: Any, _p: Any, context: Any, _m: Any) -> None:
            context._bench_started = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def _end(_c: Any, _cur: Any, statement: str, _p: Any, context: Any, _m: Any) -> None:
            took = time.perf_counter() - context._bench_started
            self.count += 1
            if took > self.longest:
                self.longest, self.longest_sql = took, " ".join(statement.split())[:70]


def fmt(ms: list[float]) -> str:
    if not ms:
        return "no requests"
    return (
        f"{len(ms)} turns, p50 {percentile(ms, 0.5):.0f} ms, p99 {percentile(ms, 0.99):.0f} ms, "
        f"max {max(ms):.0f} ms"
    )


async def measure(database_url: str, base_url: str, tasks: int, clients: int) -> list[str]:
    started = time.perf_counter()
    expired, sizes = await fill(database_url, tasks)
    lines = [f"filled {tasks:,} finished tasks ({expired:,} past {RETENTION_DAYS} days) "
             f"in {time.perf_counter() - started:.1f} s", sizes]  # fmt: skip
    print("\n".join(lines), flush=True)

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, task_retention_days=RETENTION_DAYS,
        webhook_retention_days=7, file_retention_days=None, conversation_retention_days=None,
    )  # fmt: skip
    services = Services.open(settings, in_process_queue=True)
    clock = StatementClock()
    clock.attach(services)
    load, stop = Load(base_url), asyncio.Event()
    async with session(base_url, clients + 5) as http:
        running_load = [asyncio.create_task(load.client(http, stop)) for _ in range(clients)]
        await asyncio.sleep(5)  # the load alone, for comparison
        purge_started = time.perf_counter()
        purged = await purge(services)
        purge_ended = time.perf_counter()
        await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*running_load)
    await services.close()

    took = purge_ended - purge_started
    lines += [
        f"purge: {purged.summary()}; {took:.1f} s in all, {purged.counts['tasks'] / took:,.0f} "
        f"tasks/s; {clock.count} statements, the longest {clock.longest * 1000:.0f} ms "
        f"({clock.longest_sql}...)",
        f"load before the purge: {fmt(load.between(0, purge_started))}",
        f"load during the purge: {fmt(load.between(purge_started, purge_ended))}",
        f"errors: {len(load.errors)}" + (f" (first: {load.errors[0]})" if load.errors else ""),
    ]
    for line in lines[2:]:
        print(line, flush=True)
    assert purged.counts["tasks"] == expired, (purged.counts, expired)
    return lines


def check(database_url: str, tasks: int) -> str:
    """What is left is what should be: the recent tasks, every message of every conversation."""
    [(left,)] = sql(database_url, "SELECT count(*) FROM tasks WHERE prompt LIKE 'prompt %'")
    [(messages,)] = sql(database_url, "SELECT count(*) FROM messages WHERE content LIKE 'prompt %'")
    [(unlinked,)] = sql(database_url, "SELECT count(*) FROM messages WHERE task_id IS NULL")
    assert left == tasks - int(tasks * OLD_SHARE) and messages == tasks, (left, messages)
    return (
        f"left: {left:,} recent tasks; all {messages:,} user messages kept "
        f"({unlinked:,} messages no longer linked to a purged task)"
    )


def main() -> int:
    args = parse_args()
    # The service's own purge is off: the benchmark runs it, to time it.
    off = {"AITASKS_TASK_RETENTION_DAYS": "off", "AITASKS_WEBHOOK_RETENTION_DAYS": "off"}
    with running("aitasks", extra_env=off) as system:
        lines = run_loop(
            measure(system.database_url, system.base_urls[0], args.tasks, args.clients)
        )
        lines.append(check(system.database_url, args.tasks))
        print(lines[-1], flush=True)
    lines.insert(0, f"batches of {BATCH}; {args.clients} submit-and-poll clients beside it")
    if not args.no_record:
        command = "python -m benchmarks.purge " + " ".join(sys.argv[1:])
        append_result("Retention purge of finished tasks under load", command, lines)
    return 0


if __name__ == "__main__":
    print(f"purge benchmark on {machine_summary()}", flush=True)
    raise SystemExit(main())
