"""Spans in one process (the embedded app, in-process backends), kept in memory: a task's submit,
its run, its attempts and the model call share one trace; the model call carries the GenAI
attributes; prompt and reply text go into spans only when the operator says so; log lines carry
the span they were written in. (Real processes exporting OTLP: tests/integration/test_tracing.py.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aitasks import logs, telemetry
from aitasks.telemetry._otel import Tracing
from tests.support.embedded import EmbeddedFactory, finished
from tests.support.webhook_receiver import Receiver

PROMPT = "A secret prompt [fail-first:1]"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test, its spans kept in memory (one by one, not batched)."""
    exporter = InMemorySpanExporter()
    telemetry.install(Tracing.with_exporters([exporter], "aitasks-test", batch=False))
    yield exporter
    telemetry.uninstall()


def named(finished_spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished_spans if s.name == name]


async def ended(exporter: InMemorySpanExporter, name: str, count: int) -> None:
    """Wait until `count` spans named `name` have ended."""
    async with asyncio.timeout(10):
        while True:
            if len(named(exporter.get_finished_spans(), name)) >= count:
                return
            await asyncio.sleep(0.02)


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def run_one_task(embedded: EmbeddedFactory, prompt: str = PROMPT) -> dict[str, Any]:
    async with embedded() as client:
        answer = await client.post(
            "/v1/chat/completions",
            json={"prompt": prompt, "model": "mock-chat", "conversation_id": None},
        )
        task = await finished(client, answer.json()["task_id"])
        assert task["status"] == "SUCCESS"
        return task


async def test_a_task_is_one_trace_from_submit_to_result(
    embedded: EmbeddedFactory, spans: InMemorySpanExporter
) -> None:
    task = await run_one_task(embedded)
    done = spans.get_finished_spans()
    submit = named(done, "aitasks.submit")[0]
    trace_id = submit.context.trace_id
    # Every span of the task's life is in the submit's trace.
    assert {s.context.trace_id for s in done if s.name != "GET"} == {trace_id}
    by_id = {s.context.span_id: s for s in done}

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None
        return by_id[span.parent.span_id]

    assert attributes(submit)["aitasks.task_id"] == task["task_id"]
    assert parent(named(done, "aitasks.store.submit")[0]) is submit
    assert parent(named(done, "publish mock")[0]) is submit
    process = named(done, "process mock")[0]
    assert parent(process) is submit  # the queue entry carried the submit's context
    assert attributes(process)["messaging.destination.name"] == "mock"
    assert parent(named(done, "aitasks.claim")[0]) is process
    run = named(done, "aitasks.run")[0]
    assert parent(run) is process
    assert attributes(run)["aitasks.status"] == "SUCCESS"
    # [fail-first:1]: two attempts, each a span, the first failed and retried.
    attempts = sorted(
        named(done, "aitasks.attempt"), key=lambda s: attributes(s)["aitasks.attempt"]
    )
    assert [attributes(a)["aitasks.attempt"] for a in attempts] == [1, 2]
    assert all(parent(a) is run for a in attempts)
    assert attributes(attempts[0])["error.type"] == "provider_server_error"
    assert attributes(attempts[1]).get("error.type") is None
    assert [e.name for e in run.events] == ["aitasks.retry"]
    assert named(done, "aitasks.result.write")
    assert named(done, "aitasks.events.publish")


async def test_the_model_call_follows_the_genai_conventions(
    embedded: EmbeddedFactory, spans: InMemorySpanExporter
) -> None:
    await run_one_task(embedded, "Hello there")
    call = named(spans.get_finished_spans(), "chat mock-chat")[0]
    got = attributes(call)
    assert call.kind.name == "CLIENT"
    assert got["gen_ai.operation.name"] == "chat"
    assert got["gen_ai.provider.name"] == "mock"
    assert got["gen_ai.request.model"] == got["gen_ai.response.model"] == "mock-chat"
    assert got["gen_ai.usage.input_tokens"] > 0 and got["gen_ai.usage.output_tokens"] > 0
    assert got["gen_ai.response.finish_reasons"] == ("stop",)
    first = [e for e in call.events if e.name == "gen_ai.first_token"]
    assert len(first) == 1
    assert (first[0].attributes or {})["gen_ai.response.time_to_first_chunk"] >= 0


def everything_recorded(done: tuple[ReadableSpan, ...]) -> str:
    """Every attribute and event of every span, as one text."""
    return json.dumps(
        [[attributes(s), [[e.name, dict(e.attributes or {})] for e in s.events]] for s in done],
        default=str,
    )


async def test_prompt_and_reply_stay_out_of_spans_by_default(
    embedded: EmbeddedFactory, spans: InMemorySpanExporter
) -> None:
    task = await run_one_task(embedded)
    recorded = everything_recorded(spans.get_finished_spans())
    assert "secret prompt" not in recorded
    assert task["result"][:20] not in recorded


async def test_trace_content_puts_them_in_the_model_call(
    embedded: EmbeddedFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITASKS_TRACE_CONTENT", "1")
    exporter = InMemorySpanExporter()
    telemetry.install(Tracing.with_exporters([exporter], "aitasks-test", batch=False))
    try:
        task = await run_one_task(embedded, "A prompt to keep")
    finally:
        telemetry.uninstall()
    got = attributes(named(exporter.get_finished_spans(), "chat mock-chat")[0])
    sent = json.loads(got["gen_ai.input.messages"])
    assert sent[-1] == {"role": "user", "parts": [{"type": "text", "content": "A prompt to keep"}]}
    replied = json.loads(got["gen_ai.output.messages"])
    assert replied[0]["parts"][0]["content"] == task["result"]


def test_log_lines_carry_the_span_they_were_written_in(
    spans: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure("INFO", "json")
        with logs.task_context(task_id="t1"), telemetry.span("work"):
            logging.getLogger("aitasks.test").info("inside")
        logging.getLogger("aitasks.test").info("outside")
    finally:
        root.handlers[:], root.level = handlers, level
    inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    span = named(spans.get_finished_spans(), "work")[0]
    assert inside["task_id"] == "t1"
    assert inside["trace_id"] == f"{span.context.trace_id:032x}"
    assert inside["span_id"] == f"{span.context.span_id:016x}"
    assert "trace_id" not in outside


def test_tracing_is_asked_for_the_opentelemetry_way() -> None:
    assert not telemetry.requested({})
    assert not telemetry.requested({"OTEL_TRACES_EXPORTER": "none"})
    assert telemetry.requested({"OTEL_TRACES_EXPORTER": "otlp"})
    assert telemetry.requested({"OTEL_TRACES_EXPORTER": "console"})
    assert telemetry.requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert telemetry.requested({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not telemetry.requested({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})


# A submit and a run in a fresh interpreter with tracing unset: what it imported.
UNTRACED_RUN = """
import asyncio, json, sys, tempfile
from pathlib import Path

# What libraries import by themselves: FastAPI 0.142+ the OpenTelemetry API (for its own spans),
# redis-py 7+ the SDK's metrics when the SDK is installed (for its own, optional, metrics).
import fastapi
import redis.asyncio

before = {m for m in sys.modules if m.startswith("opentelemetry")}
from tests.support.embedded import finished, make_settings, running


async def main():
    async with running(make_settings(Path(tempfile.mkdtemp()))) as client:
        answer = await client.post(
            "/v1/chat/completions",
            json={"prompt": "hello", "model": "mock-chat", "conversation_id": None},
        )
        task = await finished(client, answer.json()["task_id"])
        assert task["status"] == "SUCCESS", task


asyncio.run(main())
print(json.dumps({
    "before": sorted(before),
    "added": sorted(m for m in sys.modules if m.startswith("opentelemetry") and m not in before),
    "ours": sorted(m for m in sys.modules if m.startswith("aitasks.telemetry.")),
    "tracing": sorted(
        m for m in sys.modules
        if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter"))
    ),
}))
"""


def test_with_tracing_unset_the_hot_path_loads_no_opentelemetry() -> None:
    """A gateway and its worker (the embedded app) submit and run a task with no OTEL_* variable
    set: no OpenTelemetry module is loaded beyond what FastAPI and redis-py import by themselves;
    no tracing SDK, no exporter, none of aitasks' own OpenTelemetry code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    ran = subprocess.run(
        [sys.executable, "-c", UNTRACED_RUN],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    loaded = json.loads(ran.stdout.strip().splitlines()[-1])
    assert loaded["added"] == [] and loaded["ours"] == [] and loaded["tracing"] == []


TABLE = """
[models."flaky-chat"]
kind = "chat"
provider = "mock"
queue = "mock"
max_attempts = 1
fallbacks = ["limited-chat"]

[models."limited-chat"]
kind = "chat"
provider = "mock"
queue = "mock"
rpm = 600
"""


async def test_a_fallback_and_the_wait_for_a_rate_slot_are_spans(
    embedded: EmbeddedFactory, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    table = tmp_path / "models.toml"
    table.write_text(TABLE)
    async with embedded(models_file=table) as client:
        answer = await client.post(
            "/v1/chat/completions",
            json={"prompt": "hello [fail-on:flaky-chat]", "model": "flaky-chat"},
        )
        task = await finished(client, answer.json()["task_id"])
    assert task["served_model"] == "limited-chat"
    done = spans.get_finished_spans()
    run = named(done, "aitasks.run")[0]
    fallback = named(done, "aitasks.fallback")[0]
    assert fallback.parent is not None and fallback.parent.span_id == run.context.span_id
    assert attributes(fallback)["aitasks.model"] == "limited-chat"
    tried = sorted(named(done, "aitasks.attempt"), key=lambda s: attributes(s)["aitasks.attempt"])
    assert [attributes(a)["aitasks.model"] for a in tried] == ["flaky-chat", "limited-chat"]
    slot = named(done, "aitasks.rate_slot")[0]
    assert attributes(slot) == {"aitasks.model": "limited-chat", "aitasks.rpm": 600}
    assert named(done, "chat limited-chat")  # the model call of the fallback


async def test_a_run_from_an_entry_without_a_trace_joins_the_stored_one(
    embedded: EmbeddedFactory, spans: InMemorySpanExporter
) -> None:
    """A retry (as a reconciler's re-publish) puts the task in its queue without a trace context;
    the run joins the trace stored with the task, as a child of its submit."""
    async with embedded() as client:
        answer = await client.post(
            "/v1/chat/completions",
            json={"prompt": "no [fail:fatal]", "model": "mock-chat", "conversation_id": None},
        )
        task_id = answer.json()["task_id"]
        await finished(client, task_id)
        assert (await client.post(f"/v1/tasks/{task_id}/retry")).status_code == 202
        await ended(spans, "aitasks.run", 2)
    done = spans.get_finished_spans()
    submit = named(done, "aitasks.submit")[0]
    first, second = sorted(named(done, "aitasks.run"), key=lambda s: s.start_time or 0)
    assert first.context.trace_id == second.context.trace_id == submit.context.trace_id
    assert second.parent is not None and second.parent.span_id == submit.context.span_id
    # The retried entry carried no context: no span of its own, nor a claim as a trace apart.
    assert len(named(done, "process mock")) == len(named(done, "aitasks.claim")) == 1


async def test_each_webhook_delivery_is_a_span_and_carries_the_trace_on(
    embedded: EmbeddedFactory, spans: InMemorySpanExporter
) -> None:
    receiver = Receiver()
    try:
        async with embedded(webhook_allow_private=True) as client:
            answer = await client.post(
                "/v1/chat/completions",
                json={"prompt": "hello", "model": "mock-chat", "callback_url": receiver.url},
            )
            await finished(client, answer.json()["task_id"])
            await ended(spans, "webhook task.succeeded", 1)
    finally:
        receiver.close()
    done = spans.get_finished_spans()
    delivery = named(done, "webhook task.succeeded")[0]
    submit = named(done, "aitasks.submit")[0]
    assert delivery.kind.name == "CLIENT"
    assert delivery.context.trace_id == submit.context.trace_id
    assert attributes(delivery)["http.response.status_code"] == 204
    assert attributes(delivery)["url.full"] == receiver.url
    # The receiver can join the trace: the POST carried the delivery span's context.
    sent = receiver.received[0].headers["traceparent"]
    assert sent.startswith(f"00-{delivery.context.trace_id:032x}-{delivery.context.span_id:016x}-")


async def test_request_parameters_and_images_follow_the_conventions(
    embedded: EmbeddedFactory, spans: InMemorySpanExporter
) -> None:
    async with embedded() as client:
        answer = await client.post(
            "/openai/v1/chat/completions",
            json={
                "model": "mock-chat",
                "messages": [{"role": "user", "content": "hi"}],
                "temperature": 0.3,
                "max_tokens": 50,
                "seed": 7,
            },
        )
        assert answer.status_code == 200, answer.text
        image = await client.post(
            "/v1/images/generations",
            json={"prompt": "a lighthouse", "model": "mock-image", "conversation_id": None},
        )
        await finished(client, image.json()["task_id"])
    done = spans.get_finished_spans()
    chat = attributes(named(done, "chat mock-chat")[0])
    assert (chat["gen_ai.request.temperature"], chat["gen_ai.request.max_tokens"]) == (0.3, 50)
    assert chat["gen_ai.request.seed"] == 7
    drawn = attributes(named(done, "generate_content mock-image")[0])
    assert drawn["gen_ai.operation.name"] == "generate_content"
    assert drawn["gen_ai.output.type"] == "image" and drawn["aitasks.images"] == 1


def test_the_sdk_reads_the_service_name_and_the_sampler_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "aitasks-eu-1")
    named_one = Tracing.with_exporters([exporter], "aitasks-gateway", batch=False)
    assert named_one.provider.resource.attributes["service.name"] == "aitasks-eu-1"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    assert (
        Tracing.with_exporters(
            [exporter], "aitasks-gateway", batch=False
        ).provider.resource.attributes["service.name"]
        == "aitasks-gateway"
    )
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    telemetry.install(Tracing.with_exporters([exporter], "aitasks-test", batch=False))
    try:
        with telemetry.span("sampled out") as span:
            assert not span.recording
            assert telemetry.traceparent() is not None  # the context still travels (flag 00)
    finally:
        telemetry.uninstall()
    assert exporter.get_finished_spans() == ()
