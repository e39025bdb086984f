"""`Idempotency-Key` on `/openai/v1`, through the official `openai` package: the SDK's retries of
one call (after a client-side timeout) reuse the key it was given, and make one task; a repeat
gets that task's answer; a reuse with another body is a 422. On both shapes of the service."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import openai
import pytest


@pytest.fixture
def tasks_made(server: str) -> Iterator[callable]:  # type: ignore[valid-type]
    """Ids of the tasks made since the test started."""
    with httpx.Client(base_url=server, timeout=10) as http:

        def listed() -> set[str]:
            answer = http.get("/v1/tasks", params={"limit": 100})
            assert answer.status_code == 200, answer.text
            return {task["task_id"] for task in answer.json()["data"]}

        before = listed()
        yield lambda: listed() - before


def sdk(server: str, **options: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/openai/v1", api_key="unused", **options)  # type: ignore[arg-type]


def test_sdk_retries_after_a_timeout_make_one_chat_task(server: str, tasks_made) -> None:  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": f"chat-{secrets.token_hex(4)}"}
    messages = [{"role": "user", "content": f"[latency:4000] once only {secrets.token_hex(4)}"}]
    # Three tries (one and two retries), each given up on after half a second.
    with (
        sdk(server, max_retries=2, timeout=0.5) as impatient,
        pytest.raises(openai.APITimeoutError),
    ):
        impatient.chat.completions.create(
            model="mock-chat",
            messages=messages,
            extra_headers=key,  # type: ignore[arg-type]
        )
    assert len(tasks_made()) == 1
    with sdk(server, max_retries=0, timeout=30) as patient:
        completion = patient.chat.completions.create(
            model="mock-chat",
            messages=messages,
            extra_headers=key,  # type: ignore[arg-type]
        )
        (task_id,) = tasks_made()
        assert completion.id == f"chatcmpl-{task_id}"
        assert completion.choices[0].message.content
        # The key with another request is refused, as on the seed API.
        with pytest.raises(openai.UnprocessableEntityError) as reused:
            patient.chat.completions.create(
                model="mock-chat",
                messages=[{"role": "user", "content": "something else"}],
                extra_headers=key,
            )
        assert "Idempotency-Key" in str(reused.value)
        # Streamed (a request of its own, with a key of its own), a repeat streams the same task.
        chunks = list(
            patient.chat.completions.create(
                model="mock-chat",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                extra_headers={"Idempotency-Key": key["Idempotency-Key"] + "-s"},
            )
        )
        again = list(
            patient.chat.completions.create(
                model="mock-chat",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                extra_headers={"Idempotency-Key": key["Idempotency-Key"] + "-s"},
            )
        )
    assert {c.id for c in chunks} == {c.id for c in again} and len({c.id for c in chunks}) == 1
    assert len(tasks_made()) == 2


def test_a_repeated_image_generation_makes_one_task(server: str, tasks_made) -> None:  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": f"image-{secrets.token_hex(4)}"}
    with sdk(server, max_retries=0, timeout=30) as client:
        first = client.images.generate(
            model="mock-image", prompt="a lighthouse", response_format="url", extra_headers=key
        )
        second = client.images.generate(
            model="mock-image", prompt="a lighthouse", response_format="url", extra_headers=key
        )
        assert first.data and [d.url for d in first.data] == [d.url for d in (second.data or [])]
        assert len(tasks_made()) == 1
        with pytest.raises(openai.UnprocessableEntityError):
            client.images.generate(model="mock-image", prompt="a harbour", extra_headers=key)
    assert len(tasks_made()) == 1
