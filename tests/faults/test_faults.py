"""Kill real processes and show that every acknowledged task still ends, once.

Each test prints its report: submitted, succeeded, failed with reason, lost, replies doubled.
"""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.faults import MakeSystem, OwnRedisSystem, wait_until
from tests.support.flows import wait_for_tasks
from tests.support.processes import Background
from tests.support.services import REDIS_URL, query

CHAT = "/v1/chat/completions"


def submit_many(base_url: str, prompts: list[str]) -> list[str]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        ids = []
        for prompt in prompts:
            response = client.post(CHAT, json={"prompt": prompt, "model": "mock-chat"})
            assert response.status_code == 202, response.text
            ids.append(response.json()["task_id"])
        return ids


def test_a_worker_killed_mid_task_loses_nothing(
    make_system: MakeSystem, postgres_url: str, redis_prefix: str
) -> None:
    system = make_system(
        database_url=postgres_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
        AITASKS_MOCK_LATENCY_MS="1500", AITASKS_WORKER_CONCURRENCY="4",
    )  # fmt: skip
    [(_, base_url)], [doomed, survivor] = system.up(gateways=1, workers=2)
    task_ids = submit_many(base_url, [f"question {n}" for n in range(16)])
    wait_until(lambda: system.running_on(doomed.popen.pid, task_ids) >= 2)
    doomed.kill()  # SIGKILL, mid-task: no chance to hand anything back

    report = system.report(task_ids)
    assert report.succeeded == 16 and not report.lost and not report.doubled
    assert report.retried >= 2  # the dead worker's tasks ran again elsewhere
    assert survivor.popen.poll() is None


def test_redis_restarted_empty_loses_nothing(
    own_redis_system: OwnRedisSystem, redis_server: Background
) -> None:
    system = own_redis_system(AITASKS_MOCK_LATENCY_MS="300", AITASKS_WORKER_CONCURRENCY="2")
    [(_, base_url)], _ = system.up(gateways=1, workers=1)
    before = submit_many(base_url, [f"before {n}" for n in range(20)])
    time.sleep(0.5)  # some running, most still queued
    redis_server.kill()
    during = submit_many(base_url, [f"during {n}" for n in range(5)])  # stored, not published
    time.sleep(1)
    redis_server.start()  # back, and empty: no streams, no groups

    report = system.report(before + during)
    assert report.succeeded == 25 and not report.lost and not report.doubled


def test_a_postgres_outage_is_a_503_and_loses_nothing(
    make_system: MakeSystem, redis_prefix: str, postgres_proxy: tuple[Background, str]
) -> None:
    proxy, proxied_url = postgres_proxy
    system = make_system(
        database_url=proxied_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
        AITASKS_MOCK_LATENCY_MS="1000",
    )  # fmt: skip
    [(_, base_url)], _ = system.up(gateways=1, workers=1)
    task_ids = submit_many(base_url, [f"question {n}" for n in range(10)])
    time.sleep(0.3)
    proxy.kill()
    with httpx.Client(base_url=base_url, timeout=10) as client:
        read = client.get(f"/v1/tasks/{task_ids[0]}")
        assert read.status_code == 503, read.text
        assert read.headers["retry-after"] == "2"
        assert read.json()["error"]["type"] == "service_unavailable"
        refused = client.post(CHAT, json={"prompt": "while down", "model": "mock-chat"})
        assert refused.status_code == 503 and "Traceback" not in refused.text
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
        time.sleep(2)  # replies finish meanwhile; the worker holds them and retries its writes
        proxy.start()
        finished = wait_for_tasks(client, task_ids, timeout=30)
    assert {t["status"] for t in finished.values()} == {"SUCCESS"}

    report = system.report(task_ids)
    assert report.succeeded == 10 and not report.lost and not report.doubled


def test_a_killed_gateway_leaves_nothing_half_done(
    make_system: MakeSystem, postgres_url: str, redis_prefix: str
) -> None:
    system = make_system(
        database_url=postgres_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
        AITASKS_MOCK_LATENCY_MS="20",
    )  # fmt: skip
    [(gateway, base_url)], _ = system.up(gateways=1, workers=1)

    acknowledged: list[str] = []

    def fire(n: int) -> None:
        try:
            response = httpx.post(
                f"{base_url}{CHAT}", json={"prompt": f"q{n}", "model": "mock-chat"}, timeout=5
            )
        except httpx.TransportError:
            return  # no answer: it may or may not have been stored
        if response.status_code == 202:
            acknowledged.append(response.json()["task_id"])

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(fire, n) for n in range(200)]
        wait_until(lambda: len(acknowledged) >= 40)
        gateway.stop(signal.SIGKILL)
        for future in futures:
            future.result()

    stored = [row[0] for row in query(system.database_url, "SELECT id FROM tasks")]
    assert set(acknowledged) <= set(stored)
    report = system.report(stored)  # every stored task ends, answered or not
    assert report.succeeded == len(stored) and not report.lost and not report.doubled


def test_sigterm_hands_unfinished_work_to_another_worker(
    make_system: MakeSystem, postgres_url: str, redis_prefix: str
) -> None:
    system = make_system(
        database_url=postgres_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
        AITASKS_MOCK_LATENCY_MS="6000", AITASKS_WORKER_CONCURRENCY="4",
    )  # fmt: skip
    [(_, base_url)], [leaving] = system.up(gateways=1, workers=1)
    task_ids = submit_many(base_url, [f"long {n}" for n in range(4)])
    wait_until(lambda: system.running_on(leaving.popen.pid, task_ids) == 4)
    # SIGTERM at once, the other worker started after: a worker's start (1-5 s on a busy
    # machine) between the two let the 6 s replies end within the grace, nothing handed back.
    started = time.monotonic()
    leaving.stop(signal.SIGTERM)
    assert time.monotonic() - started < 4  # grace (1 s) and hand-back, not the 6 s replies
    handed_back = [json.loads(line) for line in leaving.log().splitlines() if "handed back" in line]
    # Logs are JSON lines off a terminal, each about a task naming it.
    assert len(handed_back) == 4 and {h["task_id"] for h in handed_back} == set(task_ids)
    system.worker()

    report = system.report(task_ids)
    # Each ran again, to its end, on the other worker (the one that left has exited).
    assert report.succeeded == 4 and report.retried == 4
    assert not report.lost and not report.doubled
