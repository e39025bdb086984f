"""The seed's API on the embedded default: flows, and every bad input with nothing written."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from aitasks.config import Settings
from tests.support.embedded import finished
from tests.support.services import row_counts

CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"


async def chat(client: httpx.AsyncClient, prompt: str, conversation_id: str | None = None) -> Any:
    response = await client.post(
        CHAT,
        json={"prompt": prompt, "model": "gemini-2.5-flash", "conversation_id": conversation_id},
    )
    assert response.status_code == 202, response.text
    return response.json()


async def test_a_chat_turn_is_accepted_at_once_and_then_answered(
    client: httpx.AsyncClient,
) -> None:
    accepted = await chat(client, "hello")
    assert accepted["status"] == "PENDING"
    assert accepted["task_id"] and accepted["conversation_id"]
    task = await finished(client, accepted["task_id"])
    assert task["status"] == "SUCCESS"
    assert task["model"] == "gemini-2.5-flash" and task["provider"] == "mock"
    assert task["result"].startswith('Mock reply to "hello"')
    assert task["error"] is None and task["attempts"] == 1
    assert task["created_at"] <= task["started_at"] <= task["finished_at"]


async def test_follow_ups_see_the_history_and_history_is_in_order(
    client: httpx.AsyncClient,
) -> None:
    first = await chat(client, "one")
    conversation = first["conversation_id"]
    # Submitted back to back: the second turn must still wait for the first one's reply.
    second = await chat(client, "two", conversation)
    image = await client.post(
        IMAGES, json={"prompt": "a red fox", "model": "stable-diffusion-3",
                      "conversation_id": conversation},
    )  # fmt: skip
    third = await chat(client, "three", conversation)
    for accepted in (first, second, image.json(), third):
        assert accepted["conversation_id"] == conversation
        assert (await finished(client, accepted["task_id"]))["status"] == "SUCCESS"

    assert "0 earlier turns" in (await finished(client, first["task_id"]))["result"]
    assert "1 earlier turn " in (await finished(client, second["task_id"]))["result"]
    assert "3 earlier turns" in (await finished(client, third["task_id"]))["result"]

    history = (await client.get(f"/v1/conversations/{conversation}/history")).json()
    assert history["conversation_id"] == conversation
    roles_and_prompts = [(m["role"], m["content"][:20]) for m in history["messages"]]
    assert [r for r, _ in roles_and_prompts] == ["user", "assistant"] * 4
    assert [c for r, c in roles_and_prompts if r == "user"] == ["one", "two", "a red fox", "three"]
    image_reply = history["messages"][5]
    assert image_reply["task_id"] == image.json()["task_id"] and len(image_reply["images"]) == 1


async def test_an_image_is_a_real_png_served_by_the_gateway(client: httpx.AsyncClient) -> None:
    accepted = await client.post(IMAGES, json={"prompt": "a cat", "model": "stable-diffusion-3"})
    assert accepted.status_code == 202
    task = await finished(client, accepted.json()["task_id"])
    (url,) = task["result"]
    assert url.startswith("http://testserver/v1/files/")
    served = await client.get(url)
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).format == "PNG"


async def test_models_lists_the_table_and_who_serves_each(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/models")).json()
    models = {m["id"]: m for m in listing["data"]}
    assert models["deepseek-chat"]["queue"] == "deepseek"
    assert models["deepseek-chat"]["provider"] == "openai"
    assert models["deepseek-chat"]["served_by"] == "mock"
    assert models["stable-diffusion-3"]["kind"] == "image"
    assert any(p["prefix"] == "mock-" for p in listing["patterns"])
    # What each chat model takes beyond text (the table's `supports`, else its provider's).
    assert models["deepseek-chat"]["supports"] == ["tools", "json_object"]
    assert models["gemini-2.5-flash"]["supports"] == [
        "tools",
        "vision",
        "json_object",
        "json_schema",
    ]
    assert models["stable-diffusion-3"]["supports"] == []
    openai_listed = (await client.get("/openai/v1/models")).json()["data"]
    assert {m["id"]: m["supports"] for m in openai_listed}["claude-sonnet-4-5"] == [
        "tools",
        "vision",
    ]


async def test_docs_and_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    assert CHAT in (await client.get("/openapi.json")).json()["paths"]
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


BAD_INPUTS = [
    pytest.param(CHAT, {"prompt": "x", "model": "gpt-9"}, 400, "unknown_model", id="unknown-model"),
    pytest.param(CHAT, {"prompt": "", "model": "mock-chat"}, 422, "invalid_request", id="empty"),
    pytest.param(CHAT, {"prompt": "   ", "model": "mock-chat"}, 422, "invalid_request", id="blank"),
    pytest.param(CHAT, {"model": "mock-chat"}, 422, "invalid_request", id="missing-prompt"),
    pytest.param(CHAT, {"prompt": "x"}, 422, "invalid_request", id="missing-model"),
    pytest.param(CHAT, {"prompt": 5, "model": "mock-chat"}, 422, "invalid_request", id="number"),
    pytest.param(CHAT, ["prompt"], 422, "invalid_request", id="not-an-object"),
    pytest.param(
        CHAT, {"prompt": "x" * 1001, "model": "mock-chat"}, 413, "payload_too_large", id="too-long"
    ),
    pytest.param(
        CHAT, {"prompt": "x", "model": "mock-chat", "conversation_id": "nope"}, 404, "not_found",
        id="unknown-conversation",
    ),
    pytest.param(
        IMAGES, {"prompt": "x", "model": "mock-chat"}, 400, "wrong_model_kind", id="chat-as-image"
    ),
    pytest.param(
        CHAT, {"prompt": "x", "model": "stable-diffusion-3"}, 400, "wrong_model_kind",
        id="image-as-chat",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "error_type"), BAD_INPUTS)
async def test_bad_input_is_a_clear_error_and_writes_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    path: str,
    body: Any,
    status: int,
    error_type: str,
) -> None:
    existing = await chat(client, "keep me")
    await finished(client, existing["task_id"])
    before = row_counts(settings.sqlalchemy_url)
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type and error["message"]
    assert row_counts(settings.sqlalchemy_url) == before == {
        "conversations": 1, "tasks": 1, "messages": 2, "files": 0
    }  # fmt: skip


async def test_broken_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        CHAT, content=b'{"prompt": "x", ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_json"


async def test_unknown_ids_are_404(client: httpx.AsyncClient) -> None:
    for path in ("/v1/tasks/nope", "/v1/conversations/nope/history", "/v1/files/nope"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"
