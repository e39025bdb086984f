"""Webhooks: signed the Standard Webhooks way with the key's secret, retried with backoff while
the receiver fails, recorded at /v1/tasks/{id}/webhooks. (Refused destinations: tests/api.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.deployment import Deployment, Key
from tests.support.webhook_receiver import InvalidSignature, Receiver, verify


@pytest.fixture(scope="module")
def erin(deployment: Deployment) -> Key:
    return deployment.create_key("erin")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def submit_with_callback(
    deployment: Deployment, key: Key, url: str, prompt: str = "hi", **extra: Any
) -> str:
    with deployment.client(key) as client:
        body = {"prompt": prompt, "model": "mock-chat", "callback_url": url, **extra}
        answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["task_id"])


def deliveries(deployment: Deployment, key: Key, task_id: str, until: str) -> list[Any]:
    with deployment.client(key) as client:
        deadline = time.monotonic() + 15
        while True:
            listed = client.get(f"/v1/tasks/{task_id}/webhooks").json()["data"]
            if listed and all(d["status"] == until for d in listed):
                return list(listed)
            assert time.monotonic() < deadline, listed
            time.sleep(0.05)


def test_a_finished_task_is_posted_signed_with_the_keys_secret(
    deployment: Deployment, erin: Key, receiver: Receiver
) -> None:
    task_id = submit_with_callback(deployment, erin, receiver.url)
    (message,) = receiver.wait_for(1)
    verify(erin.webhook_secret, message.headers, message.body)
    with pytest.raises(InvalidSignature):
        verify(erin.webhook_secret, message.headers, message.body + b" ")
    payload = message.payload
    assert payload["type"] == "task.succeeded"
    with deployment.client(erin) as client:
        task = client.get(f"/v1/tasks/{task_id}").json()
        assert client.get("/v1/webhooks/secret").json()["secret"] == erin.webhook_secret
    assert payload["data"] == task
    (delivery,) = deliveries(deployment, erin, task_id, until="delivered")
    assert delivery["id"] == message.headers["webhook-id"]
    assert delivery["event"] == "task.succeeded"
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == 204


def test_a_failing_receiver_gets_the_same_message_again_until_it_takes_it(
    deployment: Deployment, erin: Key
) -> None:
    receiver = Receiver(fail_first=2)
    try:
        task_id = submit_with_callback(deployment, erin, receiver.url)
        first, second, third = receiver.wait_for(3)
        assert [m.answered for m in (first, second, third)] == [500, 500, 204]
        assert first.headers["webhook-id"] == third.headers["webhook-id"]
        assert first.body == third.body
        for message in (first, second, third):
            verify(erin.webhook_secret, message.headers, message.body)
        (delivery,) = deliveries(deployment, erin, task_id, until="delivered")
        assert delivery["attempts"] == 3
    finally:
        receiver.close()


def test_a_receiver_that_never_answers_well_is_given_up_on(
    deployment: Deployment, erin: Key
) -> None:
    receiver = Receiver(fail_first=-1)
    try:
        task_id = submit_with_callback(deployment, erin, receiver.url)
        (delivery,) = deliveries(deployment, erin, task_id, until="failed")
        # AITASKS_WEBHOOK_MAX_ATTEMPTS is 4 in this deployment.
        assert delivery["attempts"] == 4 and len(receiver.received) == 4
        assert delivery["last_status_code"] == 500
        assert "receiver down" in delivery["last_error"]
    finally:
        receiver.close()


def test_chosen_events_and_a_cancellation_are_sent_too(
    deployment: Deployment, erin: Key, receiver: Receiver
) -> None:
    task_id = submit_with_callback(
        deployment, erin, receiver.url, "[latency:3000] slowly", callback_events=["task.running"]
    )
    (running,) = receiver.wait_for(1)
    assert running.payload["type"] == "task.running"
    with deployment.client(erin) as client:
        assert client.post(f"/v1/tasks/{task_id}/cancel").status_code == 200
    _, cancelled = receiver.wait_for(2)
    assert cancelled.payload["type"] == "task.cancelled"
    assert cancelled.payload["data"]["status"] == "CANCELLED"
    verify(erin.webhook_secret, cancelled.headers, cancelled.body)
