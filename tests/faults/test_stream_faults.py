"""Event streams under faults, with real processes: a Redis killed under open streams ends each one
well-formed (an SSE `error` event, an error the OpenAI SDK raises), and a worker frozen past its
lease (SIGSTOP) writes nothing into the attempt that replaced it once it wakes.

Each test ends with the report of what became of its tasks (lost and doubled must be 0)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx
import openai

from aitasks.worker.runner import RECEIVE_WAIT_SECONDS
from tests.support.faults import FAST_RECOVERY, MakeSystem, OwnRedisSystem, System, wait_until
from tests.support.processes import Background
from tests.support.services import REDIS_URL, query
from tests.support.sse import SSEvent, read_events

CHAT = "/v1/chat/completions"


def submit(base_url: str, prompt: str) -> str:
    response = httpx.post(f"{base_url}{CHAT}", json={"prompt": prompt, "model": "mock-chat"})
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


class Reader(threading.Thread):
    """Reads one task's SSE stream to its end, keeping every event and what broke it."""

    def __init__(self, base_url: str, task_id: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base_url}/v1/tasks/{task_id}/events"
        self.events: list[SSEvent] = []
        self.broke: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=30) as response:
                for event in read_events(response):
                    self.events.append(event)
        except BaseException as exc:
            self.broke = exc

    def deltas(self) -> int:
        return sum(e.event == "delta" for e in self.events)


class ChatReader(threading.Thread):
    """Streams a chat completion through the official SDK, keeping the chunks and the error."""

    def __init__(self, base_url: str, prompt: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.prompt = base_url, prompt
        self.chunks: list[Any] = []
        self.broke: BaseException | None = None

    def run(self) -> None:
        sdk = openai.OpenAI(base_url=f"{self.base_url}/openai/v1", api_key="-", max_retries=0)
        try:
            stream = sdk.chat.completions.create(
                model="mock-chat", messages=[{"role": "user", "content": self.prompt}], stream=True
            )
            for chunk in stream:
                self.chunks.append(chunk)
        except BaseException as exc:
            self.broke = exc
        finally:
            sdk.close()

    def deltas(self) -> int:
        return sum(1 for c in self.chunks if c.choices and c.choices[0].delta.content)


def test_a_redis_killed_under_open_streams_ends_each_with_an_error(
    own_redis_system: OwnRedisSystem, redis_server: Background
) -> None:
    system = own_redis_system(AITASKS_MOCK_LATENCY_MS="6000", AITASKS_SSE_HEARTBEAT_SECONDS="1")
    [(gateway, base_url)], _ = system.up(gateways=1, workers=1)
    task_ids = [submit(base_url, f"a long reply {n}") for n in range(4)]
    readers = [Reader(base_url, task_id) for task_id in task_ids]
    chats = [ChatReader(base_url, f"a long chat {n}") for n in range(2)]
    for reader in [*readers, *chats]:
        reader.start()
    wait_until(lambda: all(r.deltas() >= 2 for r in [*readers, *chats]), timeout=30)
    redis_server.kill()
    for reader in [*readers, *chats]:
        reader.join(20)
        assert not reader.is_alive(), "a stream did not end after Redis went away"

    for reader in readers:
        assert reader.broke is None, f"the body was cut: {reader.broke!r}"
        *before, error = reader.events
        assert error.event == "error" and error.id is None, reader.events[-3:]
        assert error.data["error"]["type"] == "service_unavailable"
        # What to reconnect with: the last id the reader got.
        assert error.data["error"]["last_event_id"] == before[-1].id
    for chat in chats:
        assert type(chat.broke) is openai.APIError, repr(chat.broke)  # sent, not a cut body
        assert chat.broke.code == "service_unavailable"
    # A wait answers from the database meanwhile.
    waited = httpx.get(
        f"{base_url}/v1/tasks/{task_ids[0]}", headers={"Prefer": "wait=2"}, timeout=10
    )
    assert waited.status_code == 200, waited.text
    assert waited.json()["status"] in {"RUNNING", "SUCCESS"}
    assert "Exception in ASGI application" not in gateway.log()
    assert "response already started" not in gateway.log()

    redis_server.start()
    chat_ids = [c.chunks[0].id.removeprefix("chatcmpl-") for c in chats]
    report = system.report(task_ids + chat_ids)
    assert report.succeeded == 6 and not report.lost and not report.doubled


def holder(system: System, task_id: str) -> tuple[str | None, int]:
    ((worker_id, attempts),) = query(
        system.database_url, f"SELECT worker_id, attempts FROM tasks WHERE id = '{task_id}'"
    )
    return worker_id, int(attempts)


def test_a_worker_frozen_past_its_lease_writes_nothing_into_the_next_attempt(
    make_system: MakeSystem, postgres_url: str, redis_prefix: str
) -> None:
    system = make_system(
        database_url=postgres_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
        AITASKS_MOCK_LATENCY_MS="5000",
    )  # fmt: skip
    [(_, base_url)], started = system.up(gateways=1, workers=2)
    workers = {w.popen.pid: w for w in started}
    task_id = submit(base_url, "a long reply, streamed")
    wait_until(lambda: holder(system, task_id)[0] is not None, timeout=30)
    time.sleep(1.5)  # some of its text is out
    frozen_id, _ = holder(system, task_id)
    assert frozen_id is not None
    frozen = next(w for pid, w in workers.items() if f"-{pid}-" in frozen_id)
    frozen.popen.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_until(
            lambda: holder(system, task_id)[1] == 2, timeout=30
        )  # another worker took it over
        took_over = time.monotonic() - stopped
        time.sleep(0.5)  # the new attempt's `RUNNING` and its first text are in the log
    finally:
        frozen.popen.send_signal(signal.SIGCONT)  # it wakes and goes on, for a moment

    with httpx.Client(base_url=base_url, timeout=30) as client:
        with client.stream("GET", f"/v1/tasks/{task_id}/events") as response:
            events = list(read_events(response))
        task = client.get(f"/v1/tasks/{task_id}").json()
    assert task["status"] == "SUCCESS" and task["attempts"] == 2
    attempts = [e.data.get("attempt") for e in events if e.event == "status"]
    assert 2 in attempts, attempts
    second = max(i for i, e in enumerate(events) if e.data.get("attempt") == 2)
    text = "".join(e.data["delta"] for e in events[second:] if e.event == "delta")
    assert text == task["result"], "the frozen worker's text got into the new attempt"
    # What bounds a takeover (README): the lease and the queue entry's idle time both run out one
    # lease after the last renewal; another worker reclaims at its next read, which waits at most
    # RECEIVE_WAIT_SECONDS on an idle queue.
    lease = float(FAST_RECOVERY["AITASKS_LEASE_SECONDS"])
    print(f"\ntaken over {took_over:.1f} s after the freeze (lease {lease:g} s)")
    assert took_over < lease + RECEIVE_WAIT_SECONDS + 1.5

    report = system.report([task_id])
    assert report.succeeded == 1 and not report.lost and not report.doubled
