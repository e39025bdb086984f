"""Secrets stay secret: API keys, webhook secrets and provider keys never appear in an answer, a
log line or a metric, and errors carry no traceback or SQL."""

from __future__ import annotations

import re

import httpx

from tests.support.deployment import PROVIDER_SECRET, Deployment
from tests.support.flows import submit, wait_for_tasks

LEAKS = re.compile(r"Traceback|File \"|SELECT |INSERT |UPDATE |sqlalchemy|asyncpg", re.IGNORECASE)


def test_no_secret_shows_anywhere(deployment: Deployment) -> None:
    key = deployment.create_key("frank")
    forged = key.secret[:-4] + "abcd"
    answers: list[httpx.Response] = []
    with (
        deployment.client(key) as client,
        httpx.Client(
            base_url=deployment.gateways[0], headers={"Authorization": f"Bearer {forged}"}
        ) as wrong,
    ):
        failing = submit(client, "hello", model="unreachable-gpt")
        working = submit(client, "hello", model="mock-chat")
        done = wait_for_tasks(client, [failing["task_id"], working["task_id"]])
        assert done[failing["task_id"]]["status"] == "FAILED"
        answers += [
            client.get(f"/v1/tasks/{failing['task_id']}"),
            client.get("/v1/models"),
            client.get("/openai/v1/models"),
            client.get("/v1/status"),
            client.get("/v1/tasks?status=FAILED"),
            client.get("/metrics"),
            client.post("/v1/chat/completions", content=b"{not json"),
            client.post("/v1/chat/completions", json={"prompt": "\x00", "model": "mock-chat"}),
            client.get("/v1/tasks", params={"created_after": "not a date"}),
            client.post(
                "/openai/v1/chat/completions",
                json={"model": "unreachable-gpt", "messages": [{"role": "user", "content": "x"}]},
            ),
            wrong.get("/v1/tasks"),
        ]
    secrets = [key.secret, forged, key.secret.split("_", 2)[2], key.webhook_secret, PROVIDER_SECRET]
    for answer in answers:
        for secret in secrets:
            assert secret not in answer.text, (answer.request.url, secret)
        if answer.status_code >= 400:
            assert not LEAKS.search(answer.text), answer.text
    logs = deployment.logs()
    assert "unreachable-gpt" in logs  # the logs do speak of that failure, at DEBUG level even
    for secret in secrets:
        assert secret not in logs, secret
