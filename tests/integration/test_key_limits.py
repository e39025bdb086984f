"""Per-key limits, shared by every gateway through Redis: requests per minute, tasks in flight,
tokens per day. Each is hit, answered 429 with Retry-After and a message naming it, and recovered
from. (The counters' own contract, on every backend: tests/contract/test_limits.py.)"""

from __future__ import annotations

import time

import httpx
import redis

from aitasks.auth.tokens import key_id_of
from tests.support.deployment import Deployment
from tests.support.flows import submit, wait_for_tasks
from tests.support.services import REDIS_URL

SLOW = "[latency:4000] take your time"


def refusal(answer: httpx.Response, names: str) -> None:
    assert answer.status_code == 429, answer.text
    error = answer.json()["error"]
    # The seed's shape names it in `type`; OpenAI's in `code` (its type is rate_limit_error).
    assert "rate_limited" in (error["type"], error.get("code"))
    assert names in error["message"]
    assert int(answer.headers["retry-after"]) >= 1


def test_requests_per_minute_are_counted_across_gateways(deployment: Deployment) -> None:
    key = deployment.create_key("rpm-key", "--rpm", "6")
    first, second = deployment.client(key, 0), deployment.client(key, 1)
    with first, second:
        answers = [(first if n % 2 else second).get("/v1/tasks") for n in range(6)]
        assert [a.status_code for a in answers] == [200] * 6
        refusal(first.get("/v1/tasks"), "6 requests per minute")
        refusal(second.get("/openai/v1/models"), "6 requests per minute")


def test_tasks_in_flight_are_capped_and_freed(deployment: Deployment) -> None:
    key = deployment.create_key("inflight-key", "--max-inflight", "2")
    key_id = key_id_of(key.secret)
    with deployment.client(key, 0) as first, deployment.client(key, 1) as second:
        running = [submit(first, SLOW, model="mock-chat"), submit(second, SLOW, model="mock-chat")]
        body = {"prompt": "one more", "model": "mock-chat"}
        refusal(first.post("/v1/chat/completions", json=body), "2 unfinished tasks")
        refusal(
            second.post(
                "/openai/v1/chat/completions",
                json={"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]},
            ),
            "2 unfinished tasks",
        )
        # Cancelling one frees its slot at once.
        cancelled = first.post(f"/v1/tasks/{running[0]['task_id']}/cancel")
        assert cancelled.status_code == 200
        third = submit(second, "now there is room", model="mock-chat")
        # A slot whose release was lost (say a worker died just then) is found free again.
        shared = redis.Redis.from_url(REDIS_URL)
        set_key = f"{deployment.env['AITASKS_REDIS_PREFIX']}:{{k:{key_id}}}:inflight:leases"
        wait_for_tasks(first, [third["task_id"]])
        # (Scored as a stored task is: minus the time it was stored.)
        shared.zadd(set_key, {"a-task-that-finished-long-ago": -time.time()})
        shared.close()
        fourth = submit(first, "room again", model="mock-chat")
        wait_for_tasks(first, [running[1]["task_id"], fourth["task_id"]])


def test_a_daily_token_quota_refuses_new_tasks_once_spent(deployment: Deployment) -> None:
    key = deployment.create_key("tokens-key", "--daily-tokens", "5")
    with deployment.client(key) as client:
        task = submit(client, "spend my tokens", model="mock-chat")
        done = wait_for_tasks(client, [task["task_id"]])[task["task_id"]]
        assert done["usage"]["total_tokens"] > 5
        body = {"prompt": "more", "model": "mock-chat"}
        # The worker counts the tokens just after it stores the result.
        deadline = time.monotonic() + 5
        while (answer := client.post("/v1/chat/completions", json=body)).status_code != 429:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.05)
        refusal(answer, "daily token quota")
