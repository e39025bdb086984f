"""Guards on what a request may ask for: webhook destinations, and the input limits. Each refusal
is a 4xx that names what was wrong (and the setting, for a limit), and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aitasks.webhooks.targets import RefusedTarget, check_resolved, check_url
from tests.support.embedded import EmbeddedFactory


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("/relative/hook", "http:// or https://"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://localhost:9000/hook", "private destinations"),
        ("http://user:pass@example.com/hook", "credentials"),
    ],
)
async def test_private_destinations_are_refused_and_nothing_is_written(
    embedded: EmbeddedFactory, url: str, why: str
) -> None:
    async with embedded() as client:
        body = {"prompt": "hi", "model": "mock-chat", "callback_url": url}
        answer = await client.post("/v1/chat/completions", json=body)
        assert answer.status_code == 400, answer.text
        assert why in answer.json()["error"]["message"]
        assert answer.json()["error"]["param"] == "callback_url"
        assert (await client.get("/v1/tasks")).json()["data"] == []


async def test_a_name_that_resolves_to_this_machine_is_refused_before_delivery() -> None:
    assert check_url("http://example.com/hook", allow_private=False)
    with pytest.raises(RefusedTarget, match="loopback"):
        await check_resolved("http://localhost/hook", allow_private=False)
    await check_resolved("http://localhost/hook", allow_private=True)


LIMITS = {
    "max_body_bytes": 3000,
    "max_prompt_chars": 1000,
    "max_messages": 3,
    "max_history_chars": 200,
    "max_turns": 2,
    "max_images": 2,
    "max_image_side": 512,
}
OPENAI_CHAT = "/openai/v1/chat/completions"
OPENAI_IMAGES = "/openai/v1/images/generations"


def messages(count: int, chars: int = 5) -> list[dict[str, str]]:
    return [{"role": "user", "content": "x" * chars} for _ in range(count)]


@pytest.mark.parametrize(
    ("path", "body", "status", "names"),
    [
        ("/v1/chat/completions", {"prompt": "x" * 3500, "model": "mock-chat"}, 413,
         "AITASKS_MAX_BODY_BYTES"),
        ("/v1/chat/completions", {"prompt": "x" * 1001, "model": "mock-chat"}, 413,
         "AITASKS_MAX_PROMPT_CHARS"),
        (OPENAI_CHAT, {"model": "mock-chat", "messages": messages(4)}, 413,
         "AITASKS_MAX_MESSAGES"),
        (OPENAI_CHAT, {"model": "mock-chat", "messages": messages(2, chars=150)}, 413,
         "AITASKS_MAX_HISTORY_CHARS"),
        (OPENAI_IMAGES, {"model": "stable-diffusion-3", "prompt": "a cat", "n": 3}, 400,
         "AITASKS_MAX_IMAGES"),
        (OPENAI_IMAGES, {"model": "stable-diffusion-3", "prompt": "a cat", "size": "1024x1024"},
         400, "AITASKS_MAX_IMAGE_SIDE"),
    ],
)  # fmt: skip
async def test_each_input_limit_is_refused_by_name_and_nothing_is_written(
    embedded: EmbeddedFactory, path: str, body: dict[str, object], status: int, names: str
) -> None:
    async with embedded(**LIMITS) as client:
        answer = await client.post(path, json=body)
        assert answer.status_code == status, answer.text
        assert names in answer.json()["error"]["message"]
        assert (await client.get("/v1/tasks")).json()["data"] == []
        assert (await client.get("/v1/conversations")).json()["data"] == []


async def test_a_body_sent_without_its_length_is_cut_off_at_the_limit(
    embedded: EmbeddedFactory,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "mock-chat", "prompt": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    async with embedded(**LIMITS) as client:
        answer = await client.post(
            "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["type"] == "payload_too_large"
        assert "AITASKS_MAX_BODY_BYTES" in answer.json()["error"]["message"]
        assert (await client.get("/v1/tasks")).json()["data"] == []


async def test_a_conversation_past_its_turn_limit_refuses_more_turns(
    embedded: EmbeddedFactory,
) -> None:
    async with embedded(**LIMITS) as client:
        first = (
            await client.post("/v1/chat/completions", json={"prompt": "one", "model": "mock-chat"})
        ).json()
        conversation = first["conversation_id"]
        body = {"prompt": "again", "model": "mock-chat", "conversation_id": conversation}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 202
        third = await client.post("/v1/chat/completions", json=body)
        assert third.status_code == 422, third.text
        assert third.json()["error"]["type"] == "limit_exceeded"
        assert "AITASKS_MAX_TURNS" in third.json()["error"]["message"]
        listed = (await client.get("/v1/tasks", params={"conversation_id": conversation})).json()
        assert len(listed["data"]) == 2
        # The refused turn took no turn number: the history is two turns, numbered 1 and 2.
        info = (await client.get(f"/v1/conversations/{conversation}")).json()
        assert info["message_count"] <= 4


async def test_a_method_a_path_does_not_serve_is_a_405_that_names_those_it_does(
    embedded: EmbeddedFactory,
) -> None:
    async with embedded() as client:
        for method, path, allowed in (
            ("PUT", "/v1/tasks/any", "GET"),  # the poll's own route, ahead of FastAPI's
            ("DELETE", "/v1/chat/completions", "POST"),
            ("PATCH", "/healthz", "GET"),
            # Two routes of an included router share the path.
            ("PUT", "/openai/v1/responses/resp_any", "GET, DELETE"),
        ):
            answer = await client.request(method, path)
            assert answer.status_code == 405, (method, path)
            assert answer.headers["allow"] == allowed, (method, path)
            error = answer.json()["error"]  # the OpenAI surface says it as OpenAI does: a code
            assert "method_not_allowed" in (error["type"], error.get("code")), (method, path)
