"""PostgreSQL crashes right after the worker's claims, whose commits are not waited for on disk
(`driver.READ_POOL_SETTINGS`): a claim may be lost, and nothing more.

The cluster is the test's own (tests/support/postgres_cluster.py) with the durability a server
keeps by default (`synchronous_commit = on`), and killed as a crash kills it (`pg_ctl stop -m
immediate`): what it had not yet written out of its WAL buffers is gone. Each task is then either
still claimed or back as it was before the claim, none is finished without its claim, and after
the worker and the reconciler recover every task ends SUCCESS with exactly one reply.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.faults import MakeSystem
from tests.support.flows import CHAT
from tests.support.postgres_cluster import PostgresCluster, started_cluster
from tests.support.processes import free_port
from tests.support.services import REDIS_URL, query

TASKS = 24
SUBMITTERS = 4


class CrashCluster(PostgresCluster):
    """A cluster whose commits wait for their WAL as a server's do by default. A crash of its
    processes (not of the machine) loses only what was not yet written to the OS, so fsync may
    stay off. Its WAL writer writes asynchronous commits at most every 10 s (full pages aside)
    and autovacuum is off, so that nothing but the commits of the service's own writes puts the
    claims out before the kill."""

    SETTINGS = (
        "max_connections = 100\nfsync = off\nfull_page_writes = off\n"
        "wal_writer_delay = 10000ms\nautovacuum = off\n"
    )


@pytest.fixture
def cluster() -> Iterator[CrashCluster]:
    with started_cluster(lambda folder: CrashCluster(folder, free_port())) as started:
        yield started


def submit_all(base_url: str) -> list[str]:
    """TASKS chats of 3 s each, from SUBMITTERS clients at once."""
    acknowledged: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def submit(numbers: range) -> None:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            for n in numbers:
                body = {"prompt": f"[latency:3000] question {n}", "model": "mock-chat"}
                try:
                    response = client.post(CHAT, json=body)
                except httpx.HTTPError as exc:
                    with lock:
                        refused.append(repr(exc))
                    continue
                with lock:
                    if response.status_code == 202:
                        acknowledged.append(response.json()["task_id"])
                    else:
                        refused.append(f"{response.status_code} {response.text[:300]}")

    per_thread = TASKS // SUBMITTERS
    threads = [
        threading.Thread(target=submit, args=(range(i * per_thread, (i + 1) * per_thread),))
        for i in range(SUBMITTERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acknowledged) == TASKS, refused[:3]
    return acknowledged


def states(database_url: str) -> dict[str, tuple[str, int, str | None, int]]:
    """Each task's status, attempts, worker and replies."""
    rows = query(
        database_url,
        "SELECT t.id, t.status, t.attempts, t.worker_id, "
        "(SELECT count(*) FROM messages m WHERE m.task_id = t.id AND m.role = 'assistant') "
        "FROM tasks t",
    )
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


@pytest.mark.timeout(120)
def test_a_crash_after_the_claims_loses_at_most_the_claims(
    cluster: CrashCluster, redis_prefix: str, make_system: MakeSystem, tmp_path: Path
) -> None:
    # A lease of 6 s: its first renewal (a durable commit) comes 2 s after a claim.
    system = make_system(
        database_url=cluster.url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
        AITASKS_WORKER_CONCURRENCY="32", AITASKS_LEASE_SECONDS="6",
    )  # fmt: skip
    gateway, base_url = system.gateway()
    worker = system.worker()
    assert query(cluster.url, "SHOW synchronous_commit") == [("on",)]

    task_ids = submit_all(base_url)
    deadline = time.monotonic() + 10
    while Counter(s[0] for s in states(cluster.url).values())["RUNNING"] < TASKS:
        assert time.monotonic() < deadline, f"never all claimed: {states(cluster.url)}"
        time.sleep(0.01)
    cluster.stop()  # -m immediate: a crash, its WAL buffers lost
    cluster.start()

    after = states(cluster.url)
    by_status = Counter(state[0] for state in after.values())
    print(f"\nafter the crash: {dict(by_status)} of {TASKS} claimed")
    assert set(after) == set(task_ids)  # every acknowledged submit is durable
    for task_id, (status, attempts, worker_id, replies) in after.items():
        if status == "RUNNING":  # still claimed
            assert (attempts, worker_id is not None, replies) == (1, True, 0), task_id
        else:  # back to be run, as before its claim
            assert (status, attempts, worker_id, replies) == ("PENDING", 0, None, 0), task_id
    # The case this test is for happened: the last claims came after the last durable commit.
    assert by_status["PENDING"] >= 1, by_status

    report = system.report(task_ids, within=60)
    assert report.succeeded == TASKS and not report.lost and not report.doubled, str(report)
    # No finish without its claim: each task ended by one run that holds it, with one reply.
    for task_id, (status, attempts, worker_id, replies) in states(cluster.url).items():
        assert (status, replies) == ("SUCCESS", 1) and attempts >= 1 and worker_id, task_id
    assert gateway.popen.poll() is None, gateway.log()[-3000:]
    assert worker.popen.poll() is None, worker.log()[-3000:]
