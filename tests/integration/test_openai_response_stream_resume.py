"""A response's stream resumed with `starting_after` through the official SDK against real
processes (two gateways and a worker on PostgreSQL and Redis): cut mid-reply on one gateway and
resumed on the other while the reply is still being made, and resumed on a gateway that was
restarted in between; either way the events run 0, 1, 2, ... without a gap or a repeat, and the
joined text is the response's `output_text`."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
from openai.types.responses import ResponseCompletedEvent

from tests.support.processes import Process, free_port, wait_until_up
from tests.support.sdk import a_few_events, joined, openai_at
from tests.support.services import upgraded_stack

# Slow enough that the reply is still being made when the reader comes back (from another
# gateway at once; from a gateway started again, most likely, on a busy machine too).
SLOW, SLOWER = "[latency:4000]", "[latency:10000]"


@contextmanager
def started(args: list[str], env: dict[str, str], folder: Path) -> Iterator[Process]:
    process = Process(args, env, folder)
    try:
        yield process
    finally:
        process.stop()


def resume(client: openai.OpenAI, first: list[Any], *, live: bool = True) -> list[Any]:
    response_id = first[0].response.id
    if live:
        assert client.responses.retrieve(response_id).status == "in_progress"  # still being made
    stream = client.responses.retrieve(
        response_id, stream=True, starting_after=first[-1].sequence_number
    )
    return [*first, *stream]


def check_whole(client: openai.OpenAI, events: list[Any]) -> None:
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert isinstance(events[-1], ResponseCompletedEvent)
    final = client.responses.retrieve(events[0].response.id)
    text = joined(events)
    assert final.status == "completed" and text == final.output_text
    assert len(text.split()) > 10


def test_a_stream_resumes_on_another_gateway_and_after_its_gateway_restarts(
    tmp_path: Path,
) -> None:
    with upgraded_stack(tmp_path, AITASKS_SSE_HEARTBEAT_SECONDS="1") as env:
        ports = free_port(), free_port()
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        with (
            started(["worker"], env, tmp_path) as worker,
            started(["api", "--port", str(ports[1])], env, tmp_path) as other,
        ):
            gateway = Process(["api", "--port", str(ports[0])], env, tmp_path)
            try:
                wait_until_up(urls[0], gateway)
                wait_until_up(urls[1], other)
                worker.wait_for_log("on queues")
                with openai_at(urls[0]) as one, openai_at(urls[1]) as two:
                    first = a_few_events(one, f"a story told on two gateways {SLOW}")
                    check_whole(one, resume(two, first))
                    first = a_few_events(one, f"a story told across a restart {SLOWER}")
                gateway.stop(signal.SIGKILL)
                # Started again (on a port of its own: another test may have taken the old one).
                port = free_port()
                gateway = Process(["api", "--port", str(port)], env, tmp_path)
                wait_until_up(f"http://127.0.0.1:{port}", gateway, timeout=120)
                with openai_at(f"http://127.0.0.1:{port}") as again:
                    # Live from the log or, if it ended meanwhile, from the stored task: alike.
                    check_whole(again, resume(again, first, live=False))
            finally:
                gateway.stop()
