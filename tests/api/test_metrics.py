"""/metrics moves when tasks run; /readyz fails when a backing service is gone."""

from __future__ import annotations

import re

import httpx

from aitasks.api.app import create_app
from aitasks.config import Settings
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from tests.support.embedded import finished


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_metrics_move_when_tasks_run(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    ok = await client.post("/v1/chat/completions", json={"prompt": "hi", "model": "mock-chat"})
    bad = await client.post(
        "/v1/chat/completions", json={"prompt": "x [fail-first:1]", "model": "mock-chat"}
    )
    for accepted in (ok, bad):
        await finished(client, accepted.json()["task_id"])
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    for name, labels, grew_by in [
        ("aitasks_tasks_submitted_total", {"model": "mock-chat", "queue": "mock"}, 2),
        ("aitasks_tasks_finished_total",
         {"model": "mock-chat", "queue": "mock", "status": "SUCCESS"}, 2),
        ("aitasks_retries_total", {"model": "mock-chat"}, 1),
        ("aitasks_task_run_seconds_count", {"model": "mock-chat"}, 2),
        ("aitasks_task_wait_seconds_count", {"queue": "mock"}, 2),
    ]:  # fmt: skip
        assert sample(after, name, **labels) - sample(before, name, **labels) == grew_by, name
    assert sample(after, "aitasks_queue_depth", queue="mock") == 0
    assert "aitasks_queue_oldest_waiting_seconds" in after


async def test_readiness_fails_when_redis_is_gone(settings: Settings) -> None:
    db = Database(settings.sqlalchemy_url)
    await upgrade(db)
    await db.dispose()
    # A gateway whose Redis is not there (nothing listens on port 9).
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.get("/readyz")
        assert (await client.get("/healthz")).status_code == 200
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok" and checks["queue"].startswith("unreachable")


async def test_made_up_model_names_add_no_series(client: httpx.AsyncClient) -> None:
    """A caller can send any number of names a rule routes; /metrics counts them under the rule,
    so its size does not grow with them."""
    accepted = [
        await client.post(
            "/v1/chat/completions", json={"prompt": "hi", "model": f"mock-made-up-{n}"}
        )
        for n in range(30)
    ]
    for answer in accepted:
        assert answer.status_code == 202
        await finished(client, answer.json()["task_id"])
    after = (await client.get("/metrics")).text
    assert "mock-made-up" not in after
    assert sample(after, "aitasks_tasks_finished_total",
                  model="mock-", queue="mock", status="SUCCESS") == 30  # fmt: skip
