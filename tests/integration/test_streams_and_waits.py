"""The task event stream (SSE) and `Prefer: wait`, on a running `aitasks up`."""

from __future__ import annotations

import time

import httpx

from tests.support.servers import MOCK_LATENCY_MS
from tests.support.sse import SSEvent, read_events

CHAT = "/v1/chat/completions"


def submit(client: httpx.Client, prompt: str, **headers: str) -> httpx.Response:
    return client.post(CHAT, json={"prompt": prompt, "model": "mock-chat"}, headers=headers)


def stream(client: httpx.Client, task_id: str, last_event_id: str | None = None) -> list[SSEvent]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with client.stream("GET", f"/v1/tasks/{task_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(read_events(response))


def test_deltas_arrive_while_the_task_runs_and_end_in_done(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        task_id = submit(client, "tell me a story").json()["task_id"]
        events = stream(client, task_id)
    kinds = [e.event for e in events]
    assert kinds[0] == "status" and kinds[-1] == "done"
    assert [e.data["status"] for e in events if e.event == "status"] == [
        "PENDING", "RUNNING", "SUCCESS",
    ]  # fmt: skip
    deltas = [e for e in events if e.event == "delta"]
    assert len(deltas) > 5
    # The first piece came well before the last: streamed, not delivered at the end.
    assert deltas[-1].at - deltas[0].at > MOCK_LATENCY_MS / 1000 / 2
    done = events[-1].data
    assert (
        done["status"] == "SUCCESS" and "".join(d.data["delta"] for d in deltas) == done["result"]
    )
    assert all(e.id for e in events)


def test_a_reader_that_reconnects_misses_nothing_and_sees_nothing_twice(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        task_id = submit(client, "resume me").json()["task_id"]
        before: list[SSEvent] = []
        with client.stream("GET", f"/v1/tasks/{task_id}/events") as response:
            for event in read_events(response):
                before.append(event)
                if sum(e.event == "delta" for e in before) == 3:
                    break  # disconnect mid-reply
        after = stream(client, task_id, last_event_id=before[-1].id)
    text = "".join(e.data["delta"] for e in [*before, *after] if e.event == "delta")
    assert text == after[-1].data["result"]
    assert not {e.id for e in before} & {e.id for e in after}


def test_a_finished_tasks_stream_ends_at_once(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        accepted = submit(client, "quick", Prefer="wait=10").json()
        assert accepted["status"] == "SUCCESS"
        started = time.monotonic()
        events = stream(client, accepted["task_id"])
    assert events[-1].event == "done" and events[-1].data["status"] == "SUCCESS"
    assert time.monotonic() - started < 0.5
    assert (httpx.get(f"{server}/v1/tasks/nope/events")).status_code == 404


def test_stream_true_submits_and_streams_in_one_request(server: str) -> None:
    body = {"prompt": "in one go", "model": "mock-chat", "stream": True}
    with (
        httpx.Client(base_url=server, timeout=30) as client,
        client.stream("POST", CHAT, json=body) as response,
    ):
        events = list(read_events(response))
    assert events[-1].event == "done" and events[-1].data["status"] == "SUCCESS"


def test_prefer_wait_answers_when_the_task_finishes(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        started = time.monotonic()
        response = submit(client, "wait for me", Prefer="wait=10")
        elapsed = time.monotonic() - started
        assert response.status_code == 200 and response.json()["status"] == "SUCCESS"
        # The reply takes MOCK_LATENCY_MS; the answer comes right after, not at the 10 s limit.
        assert MOCK_LATENCY_MS / 1000 <= elapsed < MOCK_LATENCY_MS / 1000 + 0.5

        task_id = submit(client, "later").json()["task_id"]
        started = time.monotonic()
        task = client.get(f"/v1/tasks/{task_id}", headers={"Prefer": "wait=10"}).json()
        assert task["status"] == "SUCCESS" and time.monotonic() - started < 1.2


def test_prefer_wait_gives_up_after_n_seconds_on_a_slow_task(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        started = time.monotonic()
        response = submit(client, "slow [latency:5000]", Prefer="wait=1")
        elapsed = time.monotonic() - started
        assert response.status_code == 202 and response.json()["status"] == "RUNNING"
        assert 1 <= elapsed < 1.5
