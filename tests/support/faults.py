"""Deployments whose processes a fault test kills, and the report of what became of every task it
submitted: succeeded, failed (with the reason), lost (never finished) and doubled (more than one
reply); lost and doubled must be 0."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.support.flows import TERMINAL
from tests.support.processes import Background, Process, free_port, wait_until_up
from tests.support.services import query

# A TCP proxy to run as a process: `python tcp_proxy.py LISTEN_PORT TARGET_PORT`.
PROXY = Path(__file__).with_name("tcp_proxy.py")


@dataclass
class Report:
    submitted: int
    succeeded: int
    failed: Counter[str]
    lost: list[str]
    doubled: list[str]
    retried: int

    def __str__(self) -> str:
        failed = ", ".join(f"{n} {why}" for why, n in self.failed.items()) or "0"
        return (
            f"submitted {self.submitted}, succeeded {self.succeeded}, failed {failed}, "
            f"lost {len(self.lost)}, replies doubled {len(self.doubled)}, "
            f"run more than once {self.retried}"
        )


@dataclass
class System:
    """One deployment: a database, a Redis, and the `aitasks` processes the test starts."""

    folder: Path
    database_url: str
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def start(self, *args: str) -> Process:
        process = Process(list(args), self.env, self.folder)
        self.processes.append(process)
        return process

    def worker(self) -> Process:
        """A worker, once it is taking tasks."""
        process = self.start("worker")
        process.wait_for_log("on queues")
        return process

    def gateway(self, port: int | None = None) -> tuple[Process, str]:
        port = port or free_port()
        process = self.start("api", "--port", str(port))
        base_url = f"http://127.0.0.1:{port}"
        wait_until_up(base_url, process)
        return process, base_url

    def up(self, *, gateways: int, workers: int) -> tuple[list[tuple[Process, str]], list[Process]]:
        """Gateways and workers started side by side, returned once every one is up: each start
        is mostly an interpreter importing the service (1-4 s), which two cores do at once."""
        ports = [free_port() for _ in range(gateways)]
        started = [self.start("api", "--port", str(port)) for port in ports]
        taking = [self.start("worker") for _ in range(workers)]
        serving = [(p, f"http://127.0.0.1:{port}") for p, port in zip(started, ports, strict=True)]
        for process, base_url in serving:
            wait_until_up(base_url, process)
        for worker in taking:
            worker.wait_for_log("on queues")
        return serving, taking

    def running_on(self, worker_pid: int, task_ids: list[str]) -> int:
        """How many of `task_ids` the worker process `worker_pid` is running now."""
        ids = ", ".join(f"'{i}'" for i in task_ids)
        rows = query(
            self.database_url,
            f"SELECT count(*) FROM tasks WHERE status = 'RUNNING' AND id IN ({ids}) "
            f"AND worker_id LIKE '%-{worker_pid}-%'",
        )
        return int(rows[0][0])

    def report(self, task_ids: list[str], *, within: float = 60) -> Report:
        """Wait for every task to finish, then say what became of each."""
        ids = ", ".join(f"'{i}'" for i in task_ids)
        deadline = time.monotonic() + within
        while True:
            rows = query(
                self.database_url,
                f"SELECT id, status, error, attempts FROM tasks WHERE id IN ({ids})",
            )
            unfinished = [r for r in rows if r[1] not in TERMINAL]
            if not unfinished or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        replies = dict(
            query(
                self.database_url,
                f"SELECT task_id, count(*) FROM messages WHERE role = 'assistant' "
                f"AND task_id IN ({ids}) GROUP BY task_id",
            )
        )
        by_id: dict[str, Any] = {r[0]: r for r in rows}
        failed: Counter[str] = Counter(
            (r[2] or {}).get("type", "?") if isinstance(r[2], dict) else str(r[2])
            for r in rows
            if r[1] == "FAILED"
        )
        report = Report(
            submitted=len(task_ids),
            succeeded=sum(1 for r in rows if r[1] == "SUCCESS"),
            failed=failed,
            lost=[i for i in task_ids if i not in by_id or by_id[i][1] not in TERMINAL],
            doubled=[i for i, n in replies.items() if n > 1],
            retried=sum(1 for r in rows if r[3] > 1),
        )
        print(f"\n{report}")
        return report

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def restart_empty(redis_server: Background) -> None:
    """Kill the test's own Redis and start it again: back, and empty (no lane, stream, group or
    event log)."""
    redis_server.kill()
    time.sleep(0.5)
    redis_server.start()


FAST_RECOVERY = {
    "AITASKS_LEASE_SECONDS": "2",
    "AITASKS_RECONCILE_SECONDS": "1",
    "AITASKS_RETRY_BASE_SECONDS": "0.05",
    "AITASKS_SHUTDOWN_GRACE_SECONDS": "1",
}


class MakeSystem(Protocol):
    def __call__(
        self, *, database_url: str, redis_url: str, redis_prefix: str, **settings: str
    ) -> System: ...


class OwnRedisSystem(Protocol):
    """`own_redis_system` (tests/faults/conftest.py): a system on the test's own Redis."""

    def __call__(self, **settings: str) -> System: ...
