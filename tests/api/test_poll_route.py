"""The poll (`GET /v1/tasks/{task_id}`) is served by a plain route ahead of FastAPI's routing
(`api/poll.py`); it must answer as the documented route does, byte for byte: the task's shape for
each status, the same headers, the same errors (401, another tenant's 404, 405, the 503 of a
database that is out), and it must still be in the OpenAPI schema."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from starlette.routing import Match

from aitasks.api.poll import PollRoute
from aitasks.views import TaskView
from tests.support.embedded import finished, make_settings, running_app
from tests.support.faults import PROXY
from tests.support.keyed_app import MODES, keyed_app
from tests.support.processes import Background, free_port
from tests.support.services import fresh_postgres_database

CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"
FIELDS = list(TaskView.model_fields)


async def submitted(
    http: httpx.AsyncClient, headers: dict[str, str], path: str, **body: Any
) -> str:
    answer = await http.post(path, json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def plain_json(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON, after checking it carries nothing but its length and type."""
    headers = dict(response.headers)
    assert headers == {
        "content-length": str(len(response.content)),
        "content-type": "application/json",
    }
    body: dict[str, Any] = response.json()
    return body


def not_found(task_id: str) -> dict[str, Any]:
    message = f"task {task_id!r} not found"
    return {"error": {"type": "not_found", "message": message, "param": "task_id"}}


@pytest.mark.parametrize("mode", MODES)
async def test_a_poll_answers_each_finished_task_as_the_task_list_shows_it(
    mode: str, tmp_path: Path
) -> None:
    async with keyed_app(mode, tmp_path, worker=True) as app:
        key = await app.key("alice")
        ids = [
            await submitted(app.http, key, CHAT, prompt="hello", model="mock-chat"),
            await submitted(app.http, key, CHAT, prompt="[fail:fatal]", model="mock-chat"),
            # Its result is file links, signed while auth is on.
            await submitted(app.http, key, IMAGES, prompt="a cat", model="mock-image"),
        ]
        for task_id in ids:
            for _ in range(500):
                polled = await app.http.get(f"/v1/tasks/{task_id}", headers=key)
                if polled.json()["status"] in ("SUCCESS", "FAILED"):
                    break
            task = plain_json(polled)
            assert list(task) == FIELDS
            # The list is answered by FastAPI through the response model: the same shape.
            listed = await app.http.get(
                "/v1/tasks", params={"conversation_id": task["conversation_id"]}, headers=key
            )
            assert listed.json()["data"] == [task]
            # The bytes are pydantic's own serialization of the documented model.
            assert polled.content == TaskView.model_validate(task).model_dump_json().encode()
        statuses = [(await app.http.get(f"/v1/tasks/{i}", headers=key)).json() for i in ids]
        assert [t["status"] for t in statuses] == ["SUCCESS", "FAILED", "SUCCESS"]
        assert "signature=" in statuses[2]["result"][0]


@pytest.mark.parametrize("mode", MODES)
async def test_a_poll_needs_a_key_and_sees_only_its_tenants_tasks(
    mode: str, tmp_path: Path
) -> None:
    async with keyed_app(mode, tmp_path) as app:
        alice, bob = await app.key("alice"), await app.key("bob")
        task_id = await submitted(app.http, alice, CHAT, prompt="hi", model="mock-chat")
        path = f"/v1/tasks/{task_id}"

        task = plain_json(await app.http.get(path, headers=alice))
        assert (list(task), task["task_id"], task["status"]) == (FIELDS, task_id, "PENDING")
        # Waiting on an unfinished task answers it as it is after the wait.
        start = time.monotonic()
        waited = await app.http.get(path, headers={**alice, "Prefer": "wait=0.3"})
        assert time.monotonic() - start >= 0.3
        assert plain_json(waited) == task

        for headers in (bob, {**bob, "Prefer": "wait=5"}):
            start = time.monotonic()
            theirs = await app.http.get(path, headers=headers)
            assert (theirs.status_code, plain_json(theirs)) == (404, not_found(task_id))
            assert time.monotonic() - start < 2  # at once, even when asked to wait
        missing = await app.http.get("/v1/tasks/nope", headers=alice)
        assert (missing.status_code, plain_json(missing)) == (404, not_found("nope"))

        for headers, message in (
            ({}, "an API key is required: send `Authorization: Bearer <key>`"),
            ({"Authorization": "Bearer nope"}, "the API key is not valid"),
        ):
            refused = await app.http.get(path, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json() == {
                "error": {"type": "unauthorized", "message": message, "param": None}
            }


async def test_only_a_get_is_served_ahead_of_the_other_routes(tmp_path: Path) -> None:
    async with keyed_app("embedded", tmp_path) as app:
        key = await app.key("alice")
        task_id = await submitted(app.http, key, CHAT, prompt="hi", model="mock-chat")
        path = f"/v1/tasks/{task_id}"
        # The seed's poll is GET alone: HEAD is not served, as no other method is.
        for method in ("HEAD", "POST", "PUT", "DELETE", "PATCH"):
            answer = await app.http.request(method, path, headers=key)
            assert answer.status_code == 405, method
            if method != "HEAD":
                assert answer.json()["error"]["type"] == "method_not_allowed"
        redirected = await app.http.get(path + "/", headers=key)
        assert redirected.status_code == 307
        assert redirected.headers["location"] == f"http://testserver{path}"


async def test_the_poll_is_documented_and_served_by_the_plain_route(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path)) as (app, http):
        schema = (await http.get("/openapi.json")).json()
        read = schema["paths"]["/v1/tasks/{task_id}"]["get"]
        assert [p["name"] for p in read["parameters"]] == ["task_id", "Prefer"]
        assert read["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/TaskView"
        }
        assert {"200", "404", "401"} <= set(read["responses"])
        assert read["security"] == [{"HTTPBearer": []}]

        first = app.router.routes[0]
        scope = {"type": "http", "method": "GET", "path": "/v1/tasks/abc", "root_path": ""}
        assert isinstance(first, PollRoute)
        assert first.matches(scope)[0] is Match.FULL


async def test_a_poll_while_the_database_is_out_is_a_503(tmp_path: Path) -> None:
    with fresh_postgres_database() as database_url:
        port = free_port()
        proxy = Background([sys.executable, str(PROXY), str(port), "5432"], port)
        proxy.start()
        try:
            proxied = make_url(database_url).set(port=port)
            url = proxied.render_as_string(hide_password=False)
            async with running_app(make_settings(tmp_path, database_url=url)) as (_, http):
                task_id = await submitted(http, {}, CHAT, prompt="hi", model="mock-chat")
                await finished(http, task_id)
                proxy.kill()
                for headers in ({}, {"Prefer": "wait=1"}):
                    out = await http.get(f"/v1/tasks/{task_id}", headers=headers)
                    assert (out.status_code, out.headers["retry-after"]) == (503, "2")
                    assert out.json() == {
                        "error": {
                            "type": "service_unavailable",
                            "message": "the database is unavailable; retry shortly",
                            "param": None,
                        }
                    }
        finally:
            proxy.kill()
