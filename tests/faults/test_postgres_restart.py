"""Restart a real PostgreSQL under load, and make it read-only: the service waits these out.

The cluster is the test's own (tests/support/postgres_cluster.py), never the suite's shared server.
While PostgreSQL shuts down and starts up it ends sessions (SQLSTATE 57P01) and refuses new ones
(57P03); a read-only server refuses writes (25006). Every HTTP answer meanwhile is a success or a
503 with Retry-After, never a 500, and every task the gateway acknowledged ends SUCCESS: a worker
holding a finished reply retries its write rather than failing the task.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.faults import MakeSystem, System
from tests.support.flows import CHAT, TERMINAL
from tests.support.postgres_cluster import PostgresCluster, own_postgres
from tests.support.processes import Process
from tests.support.services import REDIS_URL, query

TASKS = 200
SUBMITTERS = 4
POLLERS = 4
RESTARTS = 3


# The tests take `make_system` last, so that its processes stop before the Redis prefix's keys are
# deleted and the cluster is stopped.
@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    with own_postgres() as started:
        yield started


@dataclass
class Traffic:
    """Every answer the gateway gave, by status; transport errors (no answer) apart."""

    answers: Counter[int] = field(default_factory=Counter)
    without_retry_after: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    no_answer: Counter[str] = field(default_factory=Counter)
    acknowledged: list[str] = field(default_factory=list)
    finished: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(
        self, client: httpx.Client, method: str, url: str, body: object = None
    ) -> httpx.Response | None:
        try:
            response = client.request(method, url, json=body)
        except httpx.TransportError as exc:
            with self.lock:
                self.no_answer[type(exc).__name__] += 1
            return None
        with self.lock:
            self.answers[response.status_code] += 1
            if response.status_code == 503 and "retry-after" not in response.headers:
                self.without_retry_after.append(f"{method} {url}: {response.text[:300]}")
            if response.status_code not in (200, 202, 503):
                answer = f"{response.status_code} {response.text[:300]}"
                self.unexpected.append(f"{method} {url}: {answer}")
        return response

    def __str__(self) -> str:
        answers = ", ".join(f"{n} x {status}" for status, n in sorted(self.answers.items()))
        missing = ", ".join(f"{n} {kind}" for kind, n in self.no_answer.items()) or "0"
        return f"answers: {answers}; no answer: {missing}"


def submit_until_acknowledged(
    client: httpx.Client, traffic: Traffic, n: int, done: threading.Event
) -> None:
    """Submit one task, again after each 503 (as a client honouring it would, if faster)."""
    body = {"prompt": f"[latency:300] question {n}", "model": "mock-chat"}
    for _ in range(200):
        if done.is_set():
            return
        response = traffic.send(client, "POST", CHAT, body)
        if response is not None and response.status_code == 202:
            with traffic.lock:
                traffic.acknowledged.append(response.json()["task_id"])
            return
        time.sleep(0.1)
    raise AssertionError(f"task {n} was never acknowledged")


def submitter(
    base_url: str, traffic: Traffic, numbers: range, pace: float, done: threading.Event
) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for n in numbers:
            submit_until_acknowledged(client, traffic, n, done)
            time.sleep(pace)


def poller(base_url: str, traffic: Traffic, done: threading.Event) -> None:
    """Read unfinished tasks over and over, as clients waiting for results do."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        while not done.is_set():
            with traffic.lock:
                unfinished = [t for t in traffic.acknowledged if t not in traffic.finished]
            for task_id in unfinished[:20]:
                response = traffic.send(client, "GET", f"/v1/tasks/{task_id}")
                if response is not None and response.status_code == 200:
                    status = response.json()["status"]
                    if status in TERMINAL:
                        with traffic.lock:
                            traffic.finished[task_id] = status
            time.sleep(0.02)


def errors_logged(process: Process) -> int:
    """Lines a process logged at ERROR (JSON lines off a terminal)."""
    return sum(1 for line in process.log().splitlines() if '"level": "error"' in line)


def running(system: System) -> int:
    rows = query(system.database_url, "SELECT count(*) FROM tasks WHERE status = 'RUNNING'")
    return int(rows[0][0])


@pytest.mark.timeout(100)
def test_a_postgres_restart_under_load_fails_nothing_and_answers_only_503s(
    cluster: PostgresCluster, redis_prefix: str, make_system: MakeSystem
) -> None:
    system = make_system(
        database_url=cluster.url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
        AITASKS_WORKER_CONCURRENCY="16",
    )  # fmt: skip
    [(gateway, base_url)], [worker] = system.up(gateways=1, workers=1)

    traffic, done = Traffic(), threading.Event()
    in_flight: list[int] = []
    restart_seconds: list[float] = []
    # 200 tasks over about five seconds from four clients, and four more reading them.
    per_thread = TASKS // SUBMITTERS
    threads = [
        threading.Thread(
            target=submitter,
            args=(base_url, traffic, range(i * per_thread, (i + 1) * per_thread), 0.1, done),
            daemon=True,
        )
        for i in range(SUBMITTERS)
    ] + [
        threading.Thread(target=poller, args=(base_url, traffic, done), daemon=True)
        for _ in range(POLLERS)
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(traffic.acknowledged) < TASKS // 3 or running(system) < 8:
            assert time.monotonic() < deadline, f"load never built up: {traffic}"
            time.sleep(0.05)
        for restart in range(RESTARTS):
            if restart:
                time.sleep(0.8)
            in_flight.append(running(system))
            started = time.monotonic()
            cluster.restart()  # -m fast: sessions ended, connections refused until it is back up
            restart_seconds.append(round(time.monotonic() - started, 2))
        for thread in threads[:SUBMITTERS]:
            thread.join(timeout=60)
        deadline = time.monotonic() + 60
        while len(traffic.finished) < len(traffic.acknowledged):
            assert time.monotonic() < deadline, f"tasks never finished: {traffic}"
            time.sleep(0.1)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=30)

    stored = [row[0] for row in query(system.database_url, "SELECT id FROM tasks")]
    report = system.report(stored)
    print(
        f"restarts took {restart_seconds} s with {in_flight} tasks running; {traffic}; "
        f"acknowledged {len(traffic.acknowledged)}, stored {len(stored)}; "
        f"worker retried a write {worker.log().count('retrying in')} times; errors logged: "
        f"gateway {errors_logged(gateway)}, worker {errors_logged(worker)}"
    )
    assert len(traffic.acknowledged) == TASKS
    assert set(traffic.acknowledged) <= set(stored)
    assert not traffic.unexpected, traffic.unexpected[:5]  # no 500, no 404 for a stored task
    assert not traffic.without_retry_after, traffic.without_retry_after[:5]
    assert set(traffic.finished.values()) == {"SUCCESS"}
    # Every stored task, answered 202 or not (a commit whose answer was lost), ends once.
    assert report.succeeded == len(stored), str(report)
    assert not report.lost and not report.doubled
    # Neither process died of it.
    assert gateway.popen.poll() is None, gateway.log()[-3000:]
    assert worker.popen.poll() is None, worker.log()[-3000:]
    # A routine outage is a warning in the worker's log, never an "unexpected error".
    assert errors_logged(worker) == 0, worker.log()[-3000:]


@pytest.mark.timeout(60)
def test_a_read_only_postgres_is_a_503_until_it_is_writable_again(
    cluster: PostgresCluster, redis_prefix: str, make_system: MakeSystem
) -> None:
    system = make_system(
        database_url=cluster.url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
        AITASKS_MOCK_LATENCY_MS="10",
    )  # fmt: skip
    [(gateway, base_url)], _ = system.up(gateways=1, workers=1)
    body = {"prompt": "while read-only", "model": "mock-chat"}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.post(CHAT, json=body).status_code == 202  # the pool holds live sessions

        cluster.execute(
            "ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()"
        )
        time.sleep(0.5)  # every session re-reads its configuration between statements
        refused = client.post(CHAT, json=body)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"]
        assert refused.json()["error"]["type"] == "service_unavailable"
        assert "Traceback" not in refused.text and "read-only" not in refused.text

        cluster.execute(
            "SET default_transaction_read_only = off",
            "ALTER SYSTEM RESET default_transaction_read_only",
            "SELECT pg_reload_conf()",
        )
        time.sleep(0.5)
        accepted = client.post(CHAT, json=body)
        assert accepted.status_code == 202, accepted.text
        task = client.get(f"/v1/tasks/{accepted.json()['task_id']}", headers={"Prefer": "wait=20"})
        assert task.json()["status"] == "SUCCESS", task.text
    assert gateway.popen.poll() is None
