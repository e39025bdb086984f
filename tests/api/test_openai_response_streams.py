"""A response's event stream through the official SDK, unchanged but for `base_url`, over the ASGI
transport on the embedded backends and on PostgreSQL + Redis: numbered 0, 1, 2, ... with every
event parsed into the SDK's own class; cut anywhere and resumed with `starting_after`, the joined
text is the response's `output_text`; told alike once its event log is gone; a failure, a
function call, a reply made again after some of it went out (`stream_interrupted`), and an event
log that cannot be read (an `error` event naming where to resume)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseTextDeltaEvent,
)

from tests.support.broken_log import failing_reads
from tests.support.keyed_app import MODES, KeyedApp, keyed_app
from tests.support.sdk import joined, sdk_for

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(params=MODES)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyedApp]:
    async with keyed_app(request.param, tmp_path, worker=True) as made:
        yield made


def task_id(response_id: str) -> str:
    return response_id.removeprefix("resp_")


async def resumed(client: openai.AsyncOpenAI, response_id: str, after: int | None) -> list[Any]:
    """The response's stream from after `after` (from its start when None), to its end."""
    if after is None:
        stream = await client.responses.retrieve(response_id, stream=True)
    else:
        stream = await client.responses.retrieve(response_id, stream=True, starting_after=after)
    return [event async for event in stream]


def skeleton(events: list[Any]) -> list[tuple[Any, ...]]:
    return [(e.type, e.sequence_number, getattr(e, "delta", None)) for e in events]


async def test_a_background_stream_cut_after_a_few_events_resumes_to_its_output_text(
    app: KeyedApp,
) -> None:
    async with sdk_for(app, "streams") as client:
        stream = await client.responses.create(
            model="mock-chat", input="tell me a story", stream=True, background=True
        )
        first: list[Any] = []
        async for event in stream:
            first.append(event)
            if sum(isinstance(e, ResponseTextDeltaEvent) for e in first) == 3:
                break  # the reader goes away mid-reply
        await stream.close()
        response_id = first[0].response.id
        assert [e.type for e in first[:3]] == [
            "response.created", "response.queued", "response.in_progress",
        ]  # fmt: skip
        assert first[0].response.status == "queued" and first[0].response.background
        rest = await resumed(client, response_id, first[-1].sequence_number)
        events = first + rest
        assert [e.sequence_number for e in events] == list(range(len(events)))
        # Every event is the SDK's own class for its type, not a bare model.
        assert all(type(e).__module__.startswith("openai.types.responses.") for e in events)
        assert isinstance(events[-1], ResponseCompletedEvent)
        final = await client.responses.retrieve(response_id)
        assert final.status == "completed" and joined(events) == final.output_text
        assert events[-1].response.output_text == final.output_text
        assert events[-2].item.id == final.output[0].id  # the same item ids as the object
        # Resumed after any event: exactly the events after it; from the start: all of them.
        whole = await resumed(client, response_id, None)
        assert skeleton(whole) == skeleton(events)
        for after in (0, 2, 3, len(events) // 2, len(events) - 2):
            assert skeleton(await resumed(client, response_id, after)) == skeleton(
                events[after + 1 :]
            )
        assert await resumed(client, response_id, len(events) - 1) == []
        # Its event log gone (expired, or Redis emptied): the same stream, from the stored task.
        await app.services.events.reset(task_id(response_id))
        assert skeleton(await resumed(client, response_id, None)) == skeleton(events)
        assert skeleton(await resumed(client, response_id, 4)) == skeleton(events[5:])


async def test_a_streamed_create_that_fails_ends_in_response_failed(app: KeyedApp) -> None:
    async with sdk_for(app, "streams") as client:
        stream = await client.responses.create(
            model="mock-chat", input="no good [fail:fatal]", stream=True
        )
        events = [event async for event in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert isinstance(events[-1], ResponseFailedEvent)
    assert events[-1].response.status == "failed" and events[-1].response.error is not None
    assert not any(isinstance(e, ResponseTextDeltaEvent) for e in events)


async def test_a_function_call_streams_its_arguments(app: KeyedApp) -> None:
    async with sdk_for(app, "streams") as client:
        stream = await client.responses.create(
            model="mock-chat", input="What does get_weather say for Paris?", tools=[WEATHER],
            stream=True,
        )  # fmt: skip
        events = [event async for event in stream]
        kinds = [e.type for e in events]
        assert kinds[3:] == [
            "response.output_item.added", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done",
            "response.completed",
        ]  # fmt: skip
        added, delta, done, item_done, completed = events[3:]
        assert added.item.type == "function_call" and added.item.name == "get_weather"
        assert delta.delta == done.arguments == item_done.item.arguments
        assert item_done.item == completed.response.output[0]
        final = await client.responses.retrieve(completed.response.id)
        assert final.status == "completed" and final.output[0].type == "function_call"
        assert final.output[0].call_id == item_done.item.call_id


async def test_a_reply_made_again_after_some_went_out_ends_in_stream_interrupted(
    app: KeyedApp,
) -> None:
    async with sdk_for(app, "streams") as client:
        stream = await client.responses.create(
            model="mock-chat", input="midway [fail-after:4] [latency:2000]", stream=True
        )
        events = [event async for event in stream]
        *before, error = events
        assert isinstance(error, ResponseErrorEvent) and error.code == "stream_interrupted"
        assert joined(before) and "starting_after=2" in error.message
        assert error.sequence_number == before[-1].sequence_number
        response_id = before[0].response.id
        # Resumed after in_progress: the new attempt's reply from its start, to the end.
        rest = await resumed(client, response_id, 2)
        final = await client.responses.retrieve(response_id)
        assert final.status == "completed" and joined(rest) == final.output_text
        assert skeleton(before[:3] + rest) == skeleton(await resumed(client, response_id, None))


async def test_a_reader_resuming_among_items_is_told_when_the_reply_is_made_again(
    app: KeyedApp,
) -> None:
    async with sdk_for(app, "streams") as client:
        slow = await client.responses.create(
            model="mock-chat", input="midway [fail-after:12] [latency:3000]", background=True
        )
        await until_in_progress(client, slow.id)
        # A reader that had items up to 4 (on an earlier connection) while the first attempt
        # streams: the second attempt's items would not follow on from its, so it is told.
        *events, error = await resumed(client, slow.id, 4)
        assert isinstance(error, ResponseErrorEvent) and error.code == "stream_interrupted"
        assert [e.sequence_number for e in events] == list(range(5, 5 + len(events)))
        assert error.sequence_number == (events[-1].sequence_number if events else 4)
        rest = await resumed(client, slow.id, 2)
        final = await client.responses.retrieve(slow.id)
        assert final.status == "completed" and joined(rest) == final.output_text


async def all_of(stream: Any) -> list[Any]:
    return [event async for event in await stream]


async def test_a_stream_ends_saying_its_response_was_cancelled_or_deleted(app: KeyedApp) -> None:
    async with sdk_for(app, "streams") as client:
        for ending in ("cancel", "delete"):
            slow = await client.responses.create(
                model="mock-chat", input="slowly [latency:5000]", background=True
            )
            reading = asyncio.create_task(all_of(client.responses.retrieve(slow.id, stream=True)))
            await until_in_progress(client, slow.id)
            if ending == "cancel":
                await client.responses.cancel(slow.id)
                events = await reading
                assert [e.sequence_number for e in events] == list(range(len(events)))
                assert isinstance(events[-1], ResponseFailedEvent)
                assert events[-1].response.status == "cancelled"
            else:
                await client.responses.delete(slow.id)
                *events, error = await reading
                assert [e.sequence_number for e in events] == list(range(len(events)))
                assert isinstance(error, ResponseErrorEvent) and error.code == "not_found"
                assert slow.id in error.message
                assert error.sequence_number == events[-1].sequence_number


async def until_in_progress(client: openai.AsyncOpenAI, response_id: str) -> None:
    for _ in range(500):
        running = await client.responses.retrieve(response_id)
        if running.status == "in_progress":
            # What it has made so far is in its stream: its object has no output until it ends.
            assert running.output == [] and running.output_text == "" and running.usage is None
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{response_id} never started")


async def test_a_stream_whose_log_fails_ends_in_an_error_event_naming_where_to_resume(
    app: KeyedApp,
) -> None:
    async with sdk_for(app, "streams") as client:
        failing_reads(app.services, after_calls=1)
        stream = await client.responses.create(
            model="mock-chat", input="slow [latency:500]", stream=True
        )
        *before, error = [event async for event in stream]
        assert isinstance(error, ResponseErrorEvent) and error.code == "service_unavailable"
        last = before[-1].sequence_number
        assert error.sequence_number == last and f"starting_after={last}" in error.message
        del app.services.events.read  # the log is back
        rest = await resumed(client, before[0].response.id, last)
        events = before + rest
        assert [e.sequence_number for e in events] == list(range(len(events)))
        final = await client.responses.retrieve(before[0].response.id)
        assert joined(events) == final.output_text and isinstance(
            events[-1], ResponseCompletedEvent
        )
