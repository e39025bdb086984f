"""Traces across processes: a gateway and workers as real processes on PostgreSQL and Redis, with
`OTEL_TRACES_EXPORTER=otlp` pointed at an OTLP/HTTP receiver this test runs (it decodes what they
send with `opentelemetry-proto`).

One submitted chat task is one trace, whatever process a span comes from: the gateway's request
span (continuing the client's `traceparent`), the submit, its commit and publish, then the worker's
processing of the queue entry, the run, the attempt and the model call, the latter in the GenAI
conventions. A worker SIGKILLed mid-task leaves its entry pending; the worker that takes it over
runs the second attempt in the same trace. A request that waits on a task links to its trace.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.otlp_receiver import ReceivedSpan, Receiver, otlp_receiver
from tests.support.processes import Process, free_port, wait_until_up
from tests.support.services import upgraded_stack


@dataclass
class Traced:
    client: httpx.Client
    receiver: Receiver
    env: dict[str, str]
    folder: Path
    workers: list[Process]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    folder = tmp_path_factory.mktemp("traced")
    with (
        otlp_receiver() as receiver,
        upgraded_stack(
            folder,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_BSP_SCHEDULE_DELAY="100",
            # A short lease, so a killed worker's task moves quickly.
            AITASKS_LEASE_SECONDS="2",
            AITASKS_MOCK_LATENCY_MS="50",
        ) as env,
    ):
        port = free_port()
        gateway = Process(["api", "--port", str(port)], env, folder)
        workers = [Process(["worker"], env, folder)]
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base_url, gateway)
            workers[0].wait_for_log("on queues")
            with httpx.Client(base_url=base_url, timeout=30) as client:
                yield Traced(client, receiver, env, folder, workers)
        finally:
            for process in (gateway, *workers):
                process.stop()


def new_traceparent() -> tuple[str, str, str]:
    """A client's own trace context: (traceparent, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def submit(traced: Traced, prompt: str, traceparent: str) -> str:
    answer = traced.client.post(
        "/v1/chat/completions",
        json={"prompt": prompt, "model": "mock-chat", "conversation_id": None},
        headers={"traceparent": traceparent},
    )
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def wait_for_status(traced: Traced, task_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 40
    while True:
        task: dict[str, Any] = traced.client.get(f"/v1/tasks/{task_id}").json()
        if task["status"] in statuses:
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.05)


def one(spans: list[ReceivedSpan], **wanted: Any) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in wanted.items())]
    assert len(found) == 1, (wanted, [(s.service, s.name) for s in spans])
    return found[0]


def test_one_task_is_one_trace_across_the_gateway_and_a_worker(traced: Traced) -> None:
    traceparent, trace_id, client_span = new_traceparent()
    for path in ("/healthz", "/metrics", "/ops", "/v1/status", "/v1/ops/series"):
        assert traced.client.get(path).status_code == 200, path
    task_id = submit(traced, "Hello across processes", traceparent)
    # Waiting for it is a request of its own: it links to the task's trace.
    waited = traced.client.get(f"/v1/tasks/{task_id}", headers={"Prefer": "wait=20"})
    assert waited.json()["status"] == "SUCCESS"

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {(s.service, s.name) for s in spans if s.trace_id == trace_id}
        return {
            ("aitasks-gateway", "POST /v1/chat/completions"),
            ("aitasks-gateway", "aitasks.submit"),
            ("aitasks-worker", "aitasks.result.write"),
            ("aitasks-worker", "process mock"),
        } <= names and any(s.name == "GET /v1/tasks/{task_id}" for s in spans)

    spans = traced.receiver.wait_for(complete)
    mine = [s for s in spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in mine}
    assert {s.service for s in mine} == {"aitasks-gateway", "aitasks-worker"}

    # The gateway continued the client's trace, and the submit is its child.
    request = one(mine, name="POST /v1/chat/completions")
    assert request.kind == "server" and request.parent_span_id == client_span
    assert request.attributes["http.response.status_code"] == 202
    submit_span = one(mine, name="aitasks.submit")
    assert by_id[submit_span.parent_span_id] is request
    assert submit_span.attributes["aitasks.task_id"] == task_id
    assert by_id[one(mine, name="aitasks.store.submit").parent_span_id] is submit_span
    assert by_id[one(mine, name="publish mock").parent_span_id] is submit_span

    # The worker, another process, picked up the context the queue entry carried.
    process = one(mine, name="process mock")
    assert process.service == "aitasks-worker" and process.kind == "consumer"
    assert by_id[process.parent_span_id] is submit_span
    run = one(mine, name="aitasks.run")
    assert by_id[run.parent_span_id] is process
    assert run.attributes["aitasks.status"] == "SUCCESS"
    attempt = one(mine, name="aitasks.attempt")
    assert by_id[attempt.parent_span_id] is run

    # The model call, in the GenAI semantic conventions.
    call = one(mine, name="chat mock-chat")
    assert call.kind == "client" and by_id[call.parent_span_id] is attempt
    assert call.attributes["gen_ai.operation.name"] == "chat"
    assert call.attributes["gen_ai.provider.name"] == "mock"
    assert call.attributes["gen_ai.request.model"] == "mock-chat"
    assert call.attributes["gen_ai.response.model"] == "mock-chat"
    assert call.attributes["gen_ai.usage.input_tokens"] > 0
    assert call.attributes["gen_ai.usage.output_tokens"] > 0
    assert call.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert [name for name, _ in call.events] == ["gen_ai.first_token"]
    # No prompt or reply text unless AITASKS_TRACE_CONTENT=1.
    assert not any("Hello across processes" in str(s.attributes) for s in mine)

    # Probes, scrapes and the operations page's reads make no spans.
    assert not [
        s
        for s in spans
        if s.kind == "server"
        and s.name.startswith("GET /")
        and (
            s.attributes["url.path"]
            in ("/healthz", "/metrics", "/ops", "/v1/status", "/v1/ops/series")
        )
    ]

    # The waiting request is a trace of its own, linked to the task's.
    wait_span = next(s for s in spans if s.name == "GET /v1/tasks/{task_id}")
    assert wait_span.trace_id != trace_id
    assert [(t, a.get("aitasks.link")) for t, _, a in wait_span.links] == [(trace_id, "wait")]


def test_a_redelivered_task_after_a_worker_is_killed_joins_the_same_trace(
    traced: Traced,
) -> None:
    traceparent, trace_id, _ = new_traceparent()
    # Slow enough to be killed in the middle of it.
    task_id = submit(traced, "Take your time [latency:3000]", traceparent)
    wait_for_status(traced, task_id, {"RUNNING"})
    time.sleep(0.5)
    traced.workers[0].kill()
    survivor = Process(["worker"], traced.env, traced.folder)
    traced.workers.append(survivor)
    task = wait_for_status(traced, task_id, {"SUCCESS", "FAILED"})
    assert task["status"] == "SUCCESS" and task["attempts"] == 2

    def second_run(spans: list[ReceivedSpan]) -> bool:
        ours = [s for s in spans if s.trace_id == trace_id]
        return any(s.name == "aitasks.result.write" for s in ours) and any(
            s.name == "aitasks.run" and s.attributes.get("aitasks.attempt") == 2 for s in ours
        )

    spans = traced.receiver.wait_for(second_run, timeout=30)
    mine = [s for s in spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in mine}
    run = one(mine, name="aitasks.run", service="aitasks-worker")  # the killed run never ended
    assert run.attributes["aitasks.attempt"] == 2
    assert f"-{survivor.popen.pid}-" in run.attributes["aitasks.worker_id"]
    process = by_id[run.parent_span_id]
    assert process.name == "process mock"
    # Redelivered: the same entry, carrying the submit's context.
    assert by_id[process.parent_span_id].name == "aitasks.submit"
    call = one(mine, name="chat mock-chat")
    assert call.attributes["aitasks.attempt"] == 2
    assert call.attributes["gen_ai.usage.output_tokens"] > 0


def test_a_resumed_stream_and_a_retry_link_to_the_tasks_trace(traced: Traced) -> None:
    traceparent, trace_id, _ = new_traceparent()
    task_id = submit(traced, "No luck [fail:fatal]", traceparent)
    wait_for_status(traced, task_id, {"FAILED"})
    # A reader resuming the task's event stream: its own trace, linked to the task's.
    with traced.client.stream(
        "GET", f"/v1/tasks/{task_id}/events", headers={"Last-Event-ID": "0-1"}
    ) as stream:
        assert stream.status_code == 200
        stream.read()
    assert traced.client.post(f"/v1/tasks/{task_id}/retry").status_code == 202
    wait_for_status(traced, task_id, {"FAILED"})

    def linked(name: str, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [s for s in spans if s.name == name and any(t == trace_id for t, _, _ in s.links)]

    spans = traced.receiver.wait_for(
        lambda spans: bool(
            linked("GET /v1/tasks/{task_id}/events", spans)
            and linked("POST /v1/tasks/{task_id}/retry", spans)
            and len([s for s in spans if s.name == "aitasks.run" and s.trace_id == trace_id]) == 2
        )
    )
    (stream_span,) = linked("GET /v1/tasks/{task_id}/events", spans)
    (retry_span,) = linked("POST /v1/tasks/{task_id}/retry", spans)
    assert stream_span.trace_id != trace_id and retry_span.trace_id != trace_id
    assert [a["aitasks.link"] for _, _, a in stream_span.links] == ["stream"]
    assert [a["aitasks.link"] for _, _, a in retry_span.links] == ["retry"]
    # The retried run is in the task's own trace, failed as the first was.
    runs = [s for s in spans if s.name == "aitasks.run" and s.trace_id == trace_id]
    assert all(r.error and r.attributes["error.type"] == "provider_bad_request" for r in runs)


def test_a_batchs_tasks_are_traces_of_their_own_linked_to_the_batch(traced: Traced) -> None:
    """Not one trace of every line: each task's run starts its own, with a link to the request
    that made the batch."""
    traceparent, trace_id, _ = new_traceparent()
    answer = traced.client.post(
        "/v1/batches",
        json=[{"prompt": f"line {n}", "model": "mock-chat"} for n in range(3)],
        headers={"traceparent": traceparent},
    )
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["id"]

    def linked_runs(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [
            s for s in spans
            if s.name == "aitasks.run" and any(t == trace_id for t, _, _ in s.links)
        ]  # fmt: skip

    spans = traced.receiver.wait_for(lambda spans: len(linked_runs(spans)) == 3)
    runs = linked_runs(spans)
    assert len({r.trace_id for r in runs}) == 3 and trace_id not in {r.trace_id for r in runs}
    assert all(r.parent_span_id == "" for r in runs)  # each the root of its own trace
    request = one(spans, name="POST /v1/batches")
    assert request.trace_id == trace_id
    assert {span_id for r in runs for _, span_id, _ in r.links} == {request.span_id}
    # A line's timeline names the batch's trace, as the one its runs link to.
    listed = traced.client.get("/v1/tasks", params={"limit": 10}).json()["data"]
    line = next(t for t in listed if t.get("batch_id") == batch_id)
    timeline = traced.client.get(f"/v1/ops/tasks/{line['task_id']}").json()
    assert (timeline["trace_id"], timeline["trace_linked"]) == (trace_id, True)
