"""OpenAI's Responses API through the official SDK, unchanged but for `base_url`, over the ASGI
transport with auth on, on the embedded backends and on PostgreSQL + Redis (`keyed_app`'s modes):
a background response polled to completed, a slow one cancelled with no reply stored, a function
tool round trip across two responses with `previous_response_id`, a response in a conversation,
`store: false`, delete, input items, idempotency, the thin webhook that `client.webhooks.unwrap`
verifies, and every bad input refused in OpenAI's error shape with nothing written."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import openai
import pytest
from PIL import Image
from sqlalchemy import text

from tests.support.keyed_app import MODES, KeyedAppFactory
from tests.support.sdk import sdk_for, until_ended
from tests.support.webhook_receiver import Receiver

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.mark.parametrize("mode", MODES)
async def test_a_background_response_is_queued_at_once_and_polled_to_completed(
    app_on: KeyedAppFactory, mode: str
) -> None:
    async with app_on(mode) as app, sdk_for(app, "ada") as sdk:
        queued = await sdk.responses.create(
            model="mock-chat", input="Tell me a story", background=True,
            instructions="Be brief.", metadata={"job": "nightly"},
        )  # fmt: skip
        assert queued.status == "queued" and queued.background is True
        assert queued.id.startswith("resp_") and queued.output == []
        done = await until_ended(sdk, queued.id)
        assert done.status == "completed", done
        assert done.output_text.startswith('Mock reply to "Tell me a story"')
        (message,) = done.output
        assert message.type == "message" and message.role == "assistant"
        assert message.content[0].type == "output_text"
        assert message.content[0].text == done.output_text
        assert done.instructions == "Be brief." and done.metadata == {"job": "nightly"}
        assert done.usage is not None and done.usage.total_tokens > 0
        assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
        assert done.usage.output_tokens_details.reasoning_tokens == 0
        assert done.error is None and done.incomplete_details is None
        # The response is its task, by the same id.
        headers = {"Authorization": f"Bearer {sdk.api_key}"}
        seen = await app.http.get(f"/v1/tasks/{queued.id.removeprefix('resp_')}", headers=headers)
        assert seen.json()["status"] == "SUCCESS" and seen.json()["result"] == done.output_text
        items = await sdk.responses.input_items.list(queued.id)
        (item,) = items.data
        assert item.type == "message" and item.role == "user"
        assert item.content[0].type == "input_text"
        assert item.content[0].text == "Tell me a story"


async def test_a_response_waited_for_is_answered_completed(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded") as app, sdk_for(app, "ada") as sdk:
        answered = await sdk.responses.create(
            model="mock-chat",
            input=[
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
            ],
        )
        assert answered.status == "completed" and answered.background is False
        assert 'Mock reply to "second"' in answered.output_text
        assert "1 earlier turn " in answered.output_text
        items = await sdk.responses.input_items.list(answered.id, order="asc", limit=2)
        assert [i.role for i in items.data] == ["user", "assistant"]  # type: ignore[union-attr]
        assert items.has_more
        rest = await sdk.responses.input_items.list(
            answered.id, order="asc", after=items.last_id or ""
        )
        assert [i.role for i in rest.data] == ["user"] and not rest.has_more  # type: ignore[union-attr]
        again = await sdk.responses.retrieve(answered.id)
        assert again.output_text == answered.output_text
        streamed = await sdk.responses.create(
            model="mock-chat", input="in the background", background=True, stream=True
        )
        events = [event async for event in streamed]
        assert events[0].type == "response.created" and events[0].response.background is True
        assert events[-1].type == "response.completed"
        failed = await sdk.responses.create(model="mock-chat", input="[fail:fatal] refuse")
        assert failed.status == "failed" and failed.output == []
        assert failed.error is not None and failed.error.code == "invalid_prompt"
        assert failed.error.message.startswith("provider_bad_request: ")


@pytest.mark.parametrize("mode", MODES)
async def test_a_slow_background_response_is_cancelled_and_stores_no_reply(
    app_on: KeyedAppFactory, mode: str
) -> None:
    async with app_on(mode) as app, sdk_for(app, "ada") as sdk:
        slow = await sdk.responses.create(
            model="mock-chat", input="[latency:2000] take your time", background=True
        )
        await until_ended(sdk, slow.id, statuses={"in_progress"})
        cancelled = await sdk.responses.cancel(slow.id)
        assert cancelled.status == "cancelled" and cancelled.output == []
        assert (await sdk.responses.cancel(slow.id)).status == "cancelled"  # again: the same
        # Past the time the reply would have taken: the stopped worker wrote nothing.
        await asyncio.sleep(2.5)
        assert (await sdk.responses.retrieve(slow.id)).status == "cancelled"
        task_id = slow.id.removeprefix("resp_")
        replies = (
            f"SELECT count(*) FROM messages WHERE task_id = '{task_id}' AND role = 'assistant'"
        )
        assert await app.count(replies) == 0
        finished = await sdk.responses.create(model="mock-chat", input="quick")
        with pytest.raises(openai.BadRequestError, match="already finished"):
            await sdk.responses.cancel(finished.id)


@pytest.mark.parametrize("mode", MODES)
async def test_a_function_call_is_answered_in_a_second_response_with_previous_response_id(
    app_on: KeyedAppFactory, mode: str
) -> None:
    async with app_on(mode) as app, sdk_for(app, "ada") as sdk:
        asked = await sdk.responses.create(
            model="mock-chat", input="What does get_weather say for Paris?", tools=[WEATHER],  # type: ignore[list-item]
            instructions="Use the tools.",
        )  # fmt: skip
        assert asked.status == "completed"
        (call,) = asked.output
        assert call.type == "function_call" and call.name == "get_weather"
        assert json.loads(call.arguments) == {"city": "mock"}
        answered = await sdk.responses.create(
            model="mock-chat",
            previous_response_id=asked.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            tools=[WEATHER],  # type: ignore[list-item]
        )
        assert answered.status == "completed", answered.error
        assert answered.previous_response_id == asked.id
        assert 'Mock reply to the tool results "sunny"' in answered.output_text
        # The context it was given: the first response's input and call, not its instructions
        # (they applied to that response alone).
        async with app.db.engine.connect() as connection:
            stored = await connection.execute(
                text("SELECT context FROM tasks WHERE id = :id"),
                {"id": answered.id.removeprefix("resp_")},
            )
            context = stored.scalar_one()
        context = json.loads(context) if isinstance(context, str) else context
        assert [m["role"] for m in context] == ["user", "assistant"]
        assert context[1]["tool_calls"][0]["id"] == call.call_id
        # Another answer to the same call, from the same response: a branch of its own.
        branch = await sdk.responses.create(
            model="mock-chat", previous_response_id=asked.id, tools=[WEATHER],  # type: ignore[list-item]
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}],
        )  # fmt: skip
        assert 'the tool results "rainy"' in branch.output_text
        assert "sunny" not in branch.output_text
        # The chain goes on: the next response sees both earlier turns.
        third = await sdk.responses.create(
            model="mock-chat", previous_response_id=answered.id, input="thanks"
        )
        assert "1 earlier turn " in third.output_text, third.output_text
        items = await sdk.responses.input_items.list(answered.id)
        (output,) = items.data
        assert output.type == "function_call_output" and output.call_id == call.call_id
        # An answer to a call that was not made is refused, and nothing is written.
        before = await app.stored()
        with pytest.raises(openai.BadRequestError, match="answers no pending tool call"):
            await sdk.responses.create(
                model="mock-chat", previous_response_id=asked.id, tools=[WEATHER],  # type: ignore[list-item]
                input=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
            )  # fmt: skip
        assert await app.stored() == before


async def test_structured_output_and_a_conversation_of_the_seed_api(
    app_on: KeyedAppFactory,
) -> None:
    async with app_on("redis") as app, sdk_for(app, "ada") as sdk:
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        shaped = await sdk.responses.create(
            model="mock-chat", input="a number",
            text={"format": {"type": "json_schema", "name": "num", "schema": schema}},
        )  # fmt: skip
        assert json.loads(shaped.output_text) == {"n": 1}
        assert shaped.text is not None and shaped.text.format is not None
        assert shaped.text.format.type == "json_schema"
        headers = {"Authorization": f"Bearer {sdk.api_key}"}
        seed = await app.http.post(
            "/v1/chat/completions", json={"prompt": "hello", "model": "mock-chat"},
            headers={**headers, "Prefer": "wait=10"},
        )  # fmt: skip
        conversation = seed.json()["conversation_id"]
        joined = await sdk.responses.create(
            model="mock-chat", input="and again", conversation=conversation
        )
        assert joined.conversation is not None and joined.conversation.id == conversation
        assert "1 earlier turn " in joined.output_text
        history = await app.http.get(f"/v1/conversations/{conversation}/history", headers=headers)
        contents = [m["content"] for m in history.json()["messages"]]
        assert contents[2:] == ["and again", joined.output_text]
        slow = await sdk.responses.create(
            model="mock-chat", input="[latency:3000] slow", background=True,
            conversation={"id": conversation},
        )  # fmt: skip
        before = await app.stored()
        with pytest.raises(openai.BadRequestError, match="in progress"):
            await sdk.responses.create(model="mock-chat", input="x", conversation=conversation)
        with pytest.raises(openai.BadRequestError, match="has not finished"):
            await sdk.responses.create(model="mock-chat", input="x", previous_response_id=slow.id)
        assert await app.stored() == before
        await sdk.responses.cancel(slow.id)


async def test_store_false_keeps_nothing_and_delete_removes_a_response(
    app_on: KeyedAppFactory,
) -> None:
    async with app_on("redis") as app, sdk_for(app, "ada") as sdk:
        before = await app.stored()
        unstored = await sdk.responses.create(model="mock-chat", input="forget me", store=False)
        assert unstored.status == "completed" and unstored.store is False
        with pytest.raises(openai.NotFoundError):
            await sdk.responses.retrieve(unstored.id)
        assert await app.stored() == before
        with pytest.raises(openai.BadRequestError, match="store"):
            await sdk.responses.create(model="mock-chat", input="x", store=False, background=True)
        streamed = await sdk.responses.create(
            model="mock-chat", input="stream and forget", store=False, stream=True
        )
        events = [event async for event in streamed]
        assert events[-1].type == "response.completed"
        with pytest.raises(openai.NotFoundError):
            await sdk.responses.retrieve(events[-1].response.id)
        assert await app.stored() == before
        kept = await sdk.responses.create(model="mock-chat", input="keep me")
        deleted = await sdk.responses.delete(kept.id)  # type: ignore[func-returns-value]
        assert deleted is None  # the SDK reads no body; the answer says deleted (below)
        with pytest.raises(openai.NotFoundError):
            await sdk.responses.retrieve(kept.id)
        assert await app.stored() == before
        answer = await app.http.delete(
            f"/openai/v1/responses/{unstored.id}",
            headers={"Authorization": f"Bearer {sdk.api_key}"},
        )
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


async def test_an_idempotent_repeat_gets_the_same_response(app_on: KeyedAppFactory) -> None:
    async with app_on("redis") as app, sdk_for(app, "ada") as sdk:
        key = {"Idempotency-Key": "order-17"}
        first = await sdk.responses.create(
            model="mock-chat", input="once", background=True, extra_headers=key
        )
        again = await sdk.responses.create(
            model="mock-chat", input="once", background=True, extra_headers=key
        )
        assert again.id == first.id
        assert await app.count("SELECT count(*) FROM tasks") == 1


async def test_a_background_responses_webhook_is_unwrapped_by_the_sdk(
    app_on: KeyedAppFactory,
) -> None:
    receiver = Receiver()
    try:
        async with app_on("redis", webhook_allow_private=True) as app, sdk_for(app, "ada") as sdk:
            headers = {"Authorization": f"Bearer {sdk.api_key}"}
            secret = (await app.http.get("/v1/webhooks/secret", headers=headers)).json()["secret"]
            queued = await sdk.responses.create(
                model="mock-chat", input="call me back", background=True,
                extra_body={"callback_url": receiver.url},
            )  # fmt: skip
            (message,) = await asyncio.to_thread(receiver.wait_for, 1)
            event = sdk.webhooks.unwrap(message.body, message.headers, secret=secret)
            assert event.type == "response.completed"
            assert event.data.id == queued.id and event.object == "event"
            assert event.id.startswith("evt_")
            assert (await sdk.responses.retrieve(event.data.id)).status == "completed"
            with pytest.raises(openai.InvalidWebhookSignatureError):
                sdk.webhooks.unwrap(message.body + b" ", message.headers, secret=secret)
            slow = await sdk.responses.create(
                model="mock-chat", input="[latency:3000] slow", background=True,
                extra_body={"callback_url": receiver.url},
            )  # fmt: skip
            await sdk.responses.cancel(slow.id)
            _, second = await asyncio.to_thread(receiver.wait_for, 2)
            cancelled = sdk.webhooks.unwrap(second.body, second.headers, secret=secret)
            assert cancelled.type == "response.cancelled" and cancelled.data.id == slow.id
            failing = await sdk.responses.create(
                model="mock-chat", input="[fail:fatal] no", background=True,
                extra_body={"callback_url": receiver.url},
            )  # fmt: skip
            *_, third = await asyncio.to_thread(receiver.wait_for, 3)
            failed = sdk.webhooks.unwrap(third.body, third.headers, secret=secret)
            assert failed.type == "response.failed" and failed.data.id == failing.id
    finally:
        receiver.close()


async def test_an_image_sent_once_stays_in_the_context_of_the_responses_after(
    app_on: KeyedAppFactory,
) -> None:
    png = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(png, "PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    async with app_on("embedded") as app, sdk_for(app, "ada") as sdk:
        first = await sdk.responses.create(
            model="mock-chat",
            input=[{"role": "user", "content": [
                {"type": "input_text", "text": "what is this"},
                {"type": "input_image", "image_url": url},
            ]}],
        )  # fmt: skip
        assert "Image 1 is 40x30." in first.output_text
        later = await sdk.responses.create(
            model="mock-chat", previous_response_id=first.id, input="and again?"
        )
        assert "1 earlier turn " in later.output_text and "Image 1 is 40x30." in later.output_text
        (sent,) = (await sdk.responses.input_items.list(first.id)).data
        assert sent.type == "message"
        image = sent.content[1]
        assert image.type == "input_image" and image.file_id


async def test_deleting_a_response_leaves_the_conversation_it_joined(
    app_on: KeyedAppFactory,
) -> None:
    async with app_on("embedded") as app, sdk_for(app, "ada") as sdk:
        conversation = await sdk.conversations.create()
        joined = await sdk.responses.create(
            model="mock-chat", input="hello", conversation=conversation.id
        )
        await sdk.responses.delete(joined.id)
        with pytest.raises(openai.NotFoundError):
            await sdk.responses.retrieve(joined.id)
        assert (await sdk.conversations.retrieve(conversation.id)).id == conversation.id
        assert (await sdk.conversations.items.list(conversation.id)).data == []
        # One that started its own conversation takes it along once nothing is left in it.
        alone = await sdk.responses.create(model="mock-chat", input="alone")
        after = await sdk.responses.create(
            model="mock-chat", input="more", previous_response_id=alone.id
        )
        await sdk.responses.delete(alone.id)
        assert await app.count("SELECT count(*) FROM conversations") == 2
        await sdk.responses.delete(after.id)
        assert await app.count("SELECT count(*) FROM conversations") == 1
