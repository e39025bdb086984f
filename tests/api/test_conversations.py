"""Managing conversations: list, read, rename, system prompt, delete (with what hangs off it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from aitasks.config import Settings
from aitasks.providers.base import ChatMessage
from aitasks.providers.mock import mock_reply
from tests.support.embedded import EmbeddedFactory, finished, reaches
from tests.support.services import row_counts


async def chat(client: httpx.AsyncClient, prompt: str, conversation: str | None = None) -> Any:
    body = {"prompt": prompt, "model": "mock-chat", "conversation_id": conversation}
    accepted = (await client.post("/v1/chat/completions", json=body)).json()
    return await finished(client, accepted["task_id"])


async def test_conversations_are_listed_by_last_activity_with_titles(
    client: httpx.AsyncClient,
) -> None:
    first = await chat(client, "First conversation about the weather in Lisbon this week")
    second = await chat(client, "Second one")
    await chat(client, "and more", first["conversation_id"])  # first is now the latest

    page = (await client.get("/v1/conversations", params={"limit": 1})).json()
    (latest,) = page["data"]
    assert latest["id"] == first["conversation_id"] and page["has_more"] is True
    assert latest["title"] == "First conversation about the weather in Lisbon this week"
    assert latest["message_count"] == 4 and latest["model"] == "mock-chat"
    rest = (await client.get("/v1/conversations", params={"after": page["next_after"]})).json()
    assert [c["id"] for c in rest["data"]] == [second["conversation_id"]]
    assert rest["has_more"] is False
    one = (await client.get(f"/v1/conversations/{second['conversation_id']}")).json()
    assert one["title"] == "Second one" and one["message_count"] == 2
    assert (await client.get("/v1/conversations/nope")).status_code == 404
    assert (await client.get("/v1/conversations", params={"after": "nope"})).status_code == 400


async def test_rename_and_system_prompt(client: httpx.AsyncClient) -> None:
    conversation = (await chat(client, "hello"))["conversation_id"]
    url = f"/v1/conversations/{conversation}"
    renamed = await client.patch(url, json={"title": "Greetings", "system_prompt": "Be brief."})
    assert renamed.status_code == 200
    assert renamed.json()["title"] == "Greetings" and renamed.json()["system_prompt"] == "Be brief."
    reply = await chat(client, "again", conversation)
    # The context the model got started with the system prompt.
    first = mock_reply([ChatMessage("user", "hello")])
    expected = mock_reply(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "hello"),
         ChatMessage("assistant", first), ChatMessage("user", "again")]
    )  # fmt: skip
    assert reply["result"] == expected
    cleared = (await client.patch(url, json={"system_prompt": None})).json()
    assert cleared["system_prompt"] is None and cleared["title"] == "Greetings"
    for bad in ({}, {"title": ""}, {"title": None}, {"colour": "red"}, {"title": "x" * 201}):
        response = await client.patch(url, json=bad)
        assert response.status_code in (400, 422), bad
    assert (await client.patch("/v1/conversations/nope", json={"title": "x"})).status_code == 404


async def test_delete_removes_everything_and_stops_what_runs(
    embedded: EmbeddedFactory, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    async with embedded() as client:
        kept = (await chat(client, "keep me"))["conversation_id"]
        doomed = (await chat(client, "delete me"))["conversation_id"]
        image = (
            await client.post(
                "/v1/images/generations",
                json={"prompt": "a cat", "model": "mock-image", "conversation_id": doomed},
            )
        ).json()
        picture = (await finished(client, image["task_id"]))["result"][0]
        running = (
            await client.post(
                "/v1/chat/completions",
                json={"prompt": "slow [latency:30000]", "model": "mock-chat",
                      "conversation_id": doomed},
            )
        ).json()  # fmt: skip
        await reaches(client, running["task_id"], {"RUNNING"})
        files_before = [p for p in (tmp_path / "files").rglob("*") if p.is_file()]
        assert len(files_before) == 1

        deleted = await client.delete(f"/v1/conversations/{doomed}")
        assert deleted.status_code == 200 and deleted.json() == {
            "id": doomed, "object": "conversation", "deleted": True
        }  # fmt: skip
        for gone in (
            f"/v1/conversations/{doomed}",
            f"/v1/conversations/{doomed}/history",
            f"/v1/tasks/{running['task_id']}",
            picture,
        ):
            assert (await client.get(gone)).status_code == 404, gone
        assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []
        assert (await client.delete(f"/v1/conversations/{doomed}")).status_code == 404
        assert (await client.get(f"/v1/conversations/{kept}")).status_code == 200
    assert row_counts(settings.sqlalchemy_url) == {
        "conversations": 1, "tasks": 1, "messages": 2, "files": 0
    }  # fmt: skip


async def test_tasks_can_be_listed_by_conversation_model_and_time(
    client: httpx.AsyncClient,
) -> None:
    one = await chat(client, "one")
    two = await chat(client, "two", one["conversation_id"])
    other = await chat(client, "other")
    by_conversation = await client.get(
        "/v1/tasks", params={"conversation_id": one["conversation_id"]}
    )
    assert [t["task_id"] for t in by_conversation.json()["data"]] == [
        two["task_id"], one["task_id"],
    ]  # fmt: skip
    since = await client.get("/v1/tasks", params={"created_after": two["created_at"]})
    assert {t["task_id"] for t in since.json()["data"]} == {two["task_id"], other["task_id"]}
    before = await client.get("/v1/tasks", params={"created_before": two["created_at"]})
    assert [t["task_id"] for t in before.json()["data"]] == [one["task_id"]]
    assert (await client.get("/v1/tasks", params={"model": "nope"})).json()["data"] == []
    assert (await client.get("/v1/tasks", params={"status": "BOGUS"})).status_code == 422
