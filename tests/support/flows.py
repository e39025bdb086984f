"""The seed's user flows over real HTTP, and polling tasks until they finish, as its clients do."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
from PIL import Image

from tests.support.services import row_counts

CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"
TERMINAL = {"SUCCESS", "FAILED", "CANCELLED", "EXPIRED"}


def wait_for_tasks(
    client: httpx.Client, task_ids: list[str], timeout: float = 60
) -> dict[str, dict[str, Any]]:
    """Poll each task, as the seed's clients do, until all have finished."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for task_id in task_ids:
            if task_id in done:
                continue
            task = client.get(f"/v1/tasks/{task_id}").json()
            if task["status"] in TERMINAL:
                done[task_id] = task
        if len(done) == len(task_ids):
            return done
        time.sleep(0.05)
    missing = sorted(set(task_ids) - set(done))
    raise AssertionError(f"{len(missing)} of {len(task_ids)} tasks unfinished, e.g. {missing[:3]}")


def submit(
    client: httpx.Client,
    prompt: str,
    conversation_id: str | None = None,
    *,
    path: str = CHAT,
    model: str = "gemini-2.5-flash",
) -> dict[str, Any]:
    body = {"prompt": prompt, "model": model, "conversation_id": conversation_id}
    response = client.post(path, json=body)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    assert accepted["status"] == "PENDING"
    return accepted


def conversation_with_history_and_an_image(client: httpx.Client) -> str:
    """New conversation, follow-ups that see the history, an image turn; returns its id."""
    first = submit(client, "Hello, who are you?")
    conversation = first["conversation_id"]
    second = submit(client, "What did I just ask?", conversation, model="deepseek-chat")
    image = submit(
        client, "a cat riding a bicycle in space", conversation,
        path=IMAGES, model="stable-diffusion-3",
    )  # fmt: skip
    third = submit(client, "Describe the picture", conversation)
    ids = [t["task_id"] for t in (first, second, image, third)]
    tasks = wait_for_tasks(client, ids)
    assert all(tasks[i]["status"] == "SUCCESS" for i in ids), tasks
    assert "0 earlier turns" in tasks[first["task_id"]]["result"]
    assert "1 earlier turn " in tasks[second["task_id"]]["result"]
    assert "3 earlier turns" in tasks[third["task_id"]]["result"]

    (url,) = tasks[image["task_id"]]["result"]
    served = client.get(url)
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).format == "PNG"

    history = client.get(f"/v1/conversations/{conversation}/history").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 4
    assert [m["task_id"] for m in history] == [i for i in ids for _ in range(2)]
    assert history[5]["images"] == [url]
    assert history[7]["content"] == tasks[third["task_id"]]["result"]
    return str(conversation)


BAD_SUBMITS: list[tuple[str, Any, int]] = [
    (CHAT, {"prompt": "x", "model": "gpt-9"}, 400),
    (CHAT, {"prompt": "", "model": "mock-chat"}, 422),
    (CHAT, {"model": "mock-chat"}, 422),
    (CHAT, {"prompt": "x" * 100_001, "model": "mock-chat"}, 413),
    (CHAT, {"prompt": "x", "model": "mock-chat", "conversation_id": "no-such"}, 404),
    (IMAGES, {"prompt": "x", "model": "deepseek-chat"}, 400),
]


def bad_input_changes_nothing(client: httpx.Client, database_url: str) -> None:
    before = row_counts(database_url)
    for path, body, status in BAD_SUBMITS:
        response = client.post(path, json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["message"]
    broken = client.post(CHAT, content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_json"
    for path in ("/v1/tasks/no-such", "/v1/conversations/no-such/history", "/v1/files/no-such"):
        assert client.get(path).status_code == 404
    assert row_counts(database_url) == before
