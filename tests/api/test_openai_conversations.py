"""OpenAI's Conversations API through the official SDK, unchanged, with auth on, on the embedded
backends and on PostgreSQL + Redis (`keyed_app`'s modes): the same conversations the seed API
shows, items mapped both ways and given to the next turn as its context, stable item ids across
pages and deletes, another tenant's conversation a 404, and bad input refused with nothing
written."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import openai
import pytest
from PIL import Image

from aitasks.providers.base import ChatMessage, ToolCall
from aitasks.providers.mock import mock_reply
from tests.support.keyed_app import MODES, KeyedApp, KeyedAppFactory
from tests.support.sdk import sdk_with

COUNT = "SELECT (SELECT count(*) FROM conversations) + (SELECT count(*) FROM messages)"


async def seed_turn(
    app: KeyedApp, headers: dict[str, str], prompt: str, conversation: str | None = None
) -> dict[str, Any]:
    """A seed chat turn, waited for: the finished task."""
    body = {"prompt": prompt, "model": "mock-chat", "conversation_id": conversation}
    accepted = (await app.http.post("/v1/chat/completions", json=body, headers=headers)).json()
    async with asyncio.timeout(20):
        while True:
            task: dict[str, Any] = (
                await app.http.get(f"/v1/tasks/{accepted['task_id']}", headers=headers)
            ).json()
            if task["status"] not in ("PENDING", "RUNNING"):
                return task
            await asyncio.sleep(0.02)


def png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_manages_a_conversation_the_seed_api_shows(
    app_on: KeyedAppFactory, mode: str
) -> None:
    async with app_on(mode) as app:
        headers = await app.key("alice")
        async with sdk_with(app, headers) as sdk:
            items: Any = [
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "What is in this picture?"},
                    {"type": "input_image", "image_url": png_data_url(), "detail": "auto"},
                ]},
                {"role": "assistant", "content": "A red rectangle."},
            ]  # fmt: skip
            conversation = await sdk.conversations.create(items=items, metadata={"topic": "art"})
            assert conversation.object == "conversation" and conversation.metadata == {
                "topic": "art"
            }
            assert conversation.created_at > 1_700_000_000
            again = await sdk.conversations.retrieve(conversation.id)
            assert again.id == conversation.id and again.metadata == {"topic": "art"}
            updated = await sdk.conversations.update(conversation.id, metadata={"topic": "red"})
            assert updated.metadata == {"topic": "red"}
            assert (await sdk.conversations.retrieve(conversation.id)).metadata == {"topic": "red"}

            listed = await sdk.conversations.items.list(conversation.id, order="asc")
            user, reply = listed.data
            assert user.type == "message" and user.role == "user"
            assert [part.type for part in user.content] == ["input_text", "input_image"]
            image = user.content[1]
            assert image.type == "input_image" and image.file_id and image.image_url
            assert reply.type == "message" and reply.role == "assistant"
            assert reply.content[0].type == "output_text"
            assert reply.content[0].text == "A red rectangle."
            assert (listed.first_id, listed.last_id, listed.has_more) == (user.id, reply.id, False)
            one = await sdk.conversations.items.retrieve(reply.id, conversation_id=conversation.id)
            assert one.id == reply.id and one.type == "message"
            picture = await app.http.get(image.image_url)
            assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")

            # The seed API and the web page read the same conversation.
            seed = await app.http.get(f"/v1/conversations/{conversation.id}", headers=headers)
            assert seed.json()["message_count"] == 2
            assert seed.json()["title"] == "What is in this picture?"
            history = (
                await app.http.get(f"/v1/conversations/{conversation.id}/history", headers=headers)
            ).json()["messages"]
            assert [(m["role"], m["content"]) for m in history] == [
                ("user", "What is in this picture?"),
                ("assistant", "A red rectangle."),
            ]
            assert len(history[0]["images"]) == 1

            # An image an item brought goes with its message, and the rest with the conversation.
            picture_item: Any = {
                "role": "user",
                "content": [{"type": "input_image", "image_url": png_data_url(), "detail": "auto"}],
            }
            more = await sdk.conversations.items.create(conversation.id, items=[picture_item])
            (extra,) = more.data
            assert extra.type == "message" and extra.content[0].type == "input_image"
            extra_url = extra.content[0].image_url
            assert extra_url and (await app.http.get(extra_url)).status_code == 200
            assert await app.count("SELECT count(*) FROM files") == 2
            await sdk.conversations.items.delete(extra.id, conversation_id=conversation.id)
            assert (await app.http.get(extra_url)).status_code == 404
            assert await app.count("SELECT count(*) FROM files") == 1

            deleted = await sdk.conversations.delete(conversation.id)
            assert (deleted.id, deleted.object, deleted.deleted) == (
                conversation.id,
                "conversation.deleted",
                True,
            )
            with pytest.raises(openai.NotFoundError):
                await sdk.conversations.retrieve(conversation.id)
            gone = await app.http.get(f"/v1/conversations/{conversation.id}", headers=headers)
            assert gone.status_code == 404
            assert await app.count("SELECT count(*) FROM messages") == 0
            assert await app.count("SELECT count(*) FROM files") == 0
            assert (await app.http.get(image.image_url)).status_code == 404


@pytest.mark.parametrize("mode", MODES)
async def test_added_items_are_turns_the_next_turn_is_given(
    app_on: KeyedAppFactory, mode: str
) -> None:
    async with app_on(mode) as app:
        headers = await app.key("alice")
        first = await seed_turn(app, headers, "first question")
        conversation_id = first["conversation_id"]
        async with sdk_with(app, headers) as sdk:
            added = await sdk.conversations.items.create(
                conversation_id,
                items=[
                    {"role": "developer", "content": "Be brief.", "id": "msg_mine"},
                    {"role": "user", "content": "What is 2+2?"},
                    {"type": "message", "role": "assistant",
                     "content": [{"type": "output_text", "text": "Let me check.",
                                  "annotations": []}]},
                    {"type": "function_call", "call_id": "c1", "name": "calc",
                     "arguments": '{"x": 2}'},
                    {"type": "function_call_output", "call_id": "c1", "output": "4"},
                ],  # type: ignore[list-item]
            )  # fmt: skip
            assert [item.type for item in added.data] == [
                "message", "message", "message", "function_call", "function_call_output",
            ]  # fmt: skip
            developer, _, reply, call, output = added.data
            assert developer.type == "message" and developer.role == "developer"
            assert developer.id != "msg_mine"  # ids are the service's own
            assert reply.type == "message" and call.type == "function_call"
            assert call.id.startswith("fc_") and call.call_id == "c1" and call.name == "calc"
            assert output.type == "function_call_output" and output.output == "4"

        second = await seed_turn(app, headers, "and next?", conversation_id)
        assert second["status"] == "SUCCESS"
        context = [
            ChatMessage("user", "first question"),
            ChatMessage("assistant", first["result"]),
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "What is 2+2?"),
            ChatMessage(
                "assistant", "Let me check.", tool_calls=(ToolCall("c1", "calc", '{"x": 2}'),)
            ),
            ChatMessage("tool", "4", tool_call_id="c1"),
            ChatMessage("user", "and next?"),
        ]
        assert second["result"] == mock_reply(context)
        history = (
            await app.http.get(f"/v1/conversations/{conversation_id}/history", headers=headers)
        ).json()["messages"]
        assert [m["role"] for m in history] == [
            "user", "assistant", "developer", "user", "assistant", "tool", "user", "assistant",
        ]  # fmt: skip
        async with sdk_with(app, headers) as sdk:
            every = [i async for i in sdk.conversations.items.list(conversation_id, order="asc")]
        assert [i.type for i in every] == [
            "message", "message", "message", "message", "message", "function_call",
            "function_call_output", "message", "message",
        ]  # fmt: skip
        assert [getattr(i, "role", None) for i in every][-2:] == ["user", "assistant"]


async def test_pages_in_either_order_and_ids_that_stay(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded") as app:
        headers = await app.key("alice")
        async with sdk_with(app, headers) as sdk:
            items: Any = [{"role": "user", "content": f"u{n}"} for n in range(4)]
            items += [
                {"role": "assistant", "content": "calling"},
                {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "a", "output": "A"},
                {"type": "function_call_output", "call_id": "b", "output": "B"},
                {"role": "user", "content": "u4"},
            ]
            conversation = await sdk.conversations.create(items=items)
            cid = conversation.id
            asc = [i.id async for i in sdk.conversations.items.list(cid, order="asc", limit=100)]
            assert len(asc) == 10 and len(set(asc)) == 10
            for limit in (1, 2, 3):
                paged = [
                    i.id async for i in sdk.conversations.items.list(cid, order="asc", limit=limit)
                ]
                assert paged == asc
                back = [i.id async for i in sdk.conversations.items.list(cid, limit=limit)]
                assert back == asc[::-1]  # newest first by default
            page = await sdk.conversations.items.list(cid, order="asc", limit=3, after=asc[4])
            assert [i.id for i in page.data] == asc[5:8] and page.has_more is True
            last = await sdk.conversations.items.list(cid, order="asc", limit=3, after=asc[7])
            assert [i.id for i in last.data] == asc[8:] and last.has_more is False

            # Deleting one of two calls leaves the other's id as it was.
            call_a, call_b = asc[5], asc[6]
            answer = await sdk.conversations.items.delete(call_a, conversation_id=cid)
            assert answer.id == cid and answer.object == "conversation"
            with pytest.raises(openai.NotFoundError):
                await sdk.conversations.items.retrieve(call_a, conversation_id=cid)
            kept = await sdk.conversations.items.retrieve(call_b, conversation_id=cid)
            assert kept.type == "function_call" and kept.call_id == "b"
            await sdk.conversations.items.delete(asc[0], conversation_id=cid)
            now = [i.id async for i in sdk.conversations.items.list(cid, order="asc")]
            assert now == [i for i in asc if i not in (asc[0], call_a)]
            history = (
                await app.http.get(f"/v1/conversations/{cid}/history", headers=headers)
            ).json()["messages"]
            assert [m["content"] for m in history][:3] == ["u1", "u2", "u3"]
            calls = history[3]["tool_calls"]
            assert [c["id"] for c in calls] == ["b"]
            with pytest.raises(openai.BadRequestError):
                await sdk.conversations.items.list(cid, after=call_a)
            with pytest.raises(openai.NotFoundError):
                await sdk.conversations.items.delete("msg_nonsense", conversation_id=cid)


@pytest.mark.parametrize("mode", MODES)
async def test_another_tenants_conversation_is_not_found(
    app_on: KeyedAppFactory, mode: str
) -> None:
    async with app_on(mode) as app:
        alice, mallory = await app.key("alice"), await app.key("mallory")
        async with sdk_with(app, alice) as mine, sdk_with(app, mallory) as theirs:
            conversation = await mine.conversations.create(
                items=[{"role": "user", "content": "secret"}], metadata={"k": "v"}
            )
            cid = conversation.id
            item = (await mine.conversations.items.list(cid)).data[0].id
            before = await app.count(COUNT)
            attempts = [
                theirs.conversations.retrieve(cid),
                theirs.conversations.update(cid, metadata={"k": "stolen"}),
                theirs.conversations.delete(cid),
                theirs.conversations.items.list(cid),
                theirs.conversations.items.create(
                    cid, items=[{"role": "user", "content": "injected"}]
                ),
                theirs.conversations.items.retrieve(item, conversation_id=cid),
                theirs.conversations.items.delete(item, conversation_id=cid),
            ]
            for attempt in attempts:
                with pytest.raises(openai.NotFoundError):
                    await attempt
            assert await app.count(COUNT) == before
            assert (await mine.conversations.retrieve(cid)).metadata == {"k": "v"}
            assert [i.id for i in (await mine.conversations.items.list(cid)).data] == [item]


BAD_CREATES: list[dict[str, Any]] = [
    {"items": [{"role": "user", "content": f"m{n}"} for n in range(21)]},
    {"metadata": {f"k{n}": "v" for n in range(17)}},
    {"metadata": {"k": "v" * 513}},
    {"metadata": {"k" * 65: "v"}},
    {"items": [{"role": "user", "content": "ok"}, {"type": "web_search_call", "id": "x"}]},
    {"items": [{"role": "tool", "content": "no"}]},
    {"items": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
    {"items": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:x"}]}]},
    {"items": [{"role": "user", "content": [{"type": "input_image", "file_id": "0" * 32}]}]},
    {"items": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]},
    {"items": [{"type": "function_call_output", "call_id": "c"}]},
    {"items": [{"role": "user", "content": ""}]},
    {"items": "not a list"},
]


async def test_bad_input_is_refused_with_nothing_written(app_on: KeyedAppFactory) -> None:
    async with app_on("embedded", max_prompt_chars=100, max_turns=3) as app:
        headers = await app.key("alice")
        async with sdk_with(app, headers) as sdk:
            conversation = await sdk.conversations.create(items=[{"role": "user", "content": "a"}])
            before = await app.count(COUNT)
            for body in [*BAD_CREATES, {"items": [{"role": "user", "content": "x" * 101}]}]:
                with pytest.raises(openai.BadRequestError):
                    await sdk.conversations.create(**body)
                if "items" in body:
                    with pytest.raises(openai.BadRequestError):
                        await sdk.conversations.items.create(conversation.id, items=body["items"])
            with pytest.raises(openai.BadRequestError):
                await sdk.conversations.items.create(conversation.id, items=[])
            with pytest.raises(openai.BadRequestError):
                await sdk.conversations.update(conversation.id, metadata={"k": "v" * 513})
            with pytest.raises(openai.NotFoundError):
                await sdk.conversations.items.create(
                    "0" * 32, items=[{"role": "user", "content": "a"}]
                )
            three: Any = [{"role": "user", "content": "b"}] * 3  # past AITASKS_MAX_TURNS (3)
            with pytest.raises(openai.BadRequestError, match="AITASKS_MAX_TURNS"):
                await sdk.conversations.items.create(conversation.id, items=three)
            with pytest.raises(openai.BadRequestError, match="AITASKS_MAX_TURNS"):
                await sdk.conversations.create(items=[*three, *three[:1]])
            assert await app.count(COUNT) == before
            assert await app.count("SELECT count(*) FROM files") == 0


@pytest.mark.parametrize("mode", MODES)
async def test_responses_in_a_conversation_are_its_items(
    app_on: KeyedAppFactory, mode: str
) -> None:
    async with app_on(mode) as app:
        headers = await app.key("alice")
        async with sdk_with(app, headers) as sdk:
            conversation = await sdk.conversations.create(metadata={"app": "joint"})
            first = await sdk.responses.create(
                model="mock-chat", input="first question", conversation=conversation.id
            )
            second = await sdk.responses.create(
                model="mock-chat", input="second question", conversation=conversation.id
            )
            assert (first.status, second.status) == ("completed", "completed")
            assert "I was given 1 earlier turn" in second.output_text  # the first was its context
            listed = await sdk.conversations.items.list(conversation.id, order="asc")
            messages = [i for i in listed.data if i.type == "message"]
            assert [(m.role, m.content[0].type) for m in messages] == [
                ("user", "input_text"), ("assistant", "output_text"),
                ("user", "input_text"), ("assistant", "output_text"),
            ]  # fmt: skip
            texts = [getattr(m.content[0], "text", None) for m in messages]
            assert texts == [
                "first question", first.output_text, "second question", second.output_text,
            ]  # fmt: skip
            newest = await sdk.conversations.items.list(conversation.id, limit=1)
            assert newest.data[0].id == messages[-1].id and newest.has_more is True


LOOKUP = {
    "type": "function", "name": "lookup", "description": "Look a word up.",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
}  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
async def test_a_responses_output_items_are_its_conversations_items_by_the_same_ids(
    app_on: KeyedAppFactory, mode: str
) -> None:
    async with app_on(mode) as app:
        headers = await app.key("alice")
        async with sdk_with(app, headers) as sdk:
            conversation = await sdk.conversations.create()
            cid = conversation.id
            answered = await sdk.responses.create(
                model="mock-chat", input="hello there", conversation=cid
            )
            stream = await sdk.responses.create(
                model="mock-chat", input="What does lookup say?", tools=[LOOKUP], conversation=cid,  # type: ignore[list-item]
                stream=True,
            )  # fmt: skip
            events = [event async for event in stream]
            done = [e.item for e in events if e.type == "response.output_item.done"]
            called = await sdk.responses.retrieve(events[-1].response.id)  # type: ignore[union-attr]
            (call,) = called.output
            assert call.type == "function_call"
            # The stream names its items as the retrieved response does...
            assert [i.id for i in done] == [call.id]
            # ...and as its conversation does: each output item is found there by its id.
            (message,) = answered.output
            found = await sdk.conversations.items.retrieve(message.id, conversation_id=cid)
            assert (found.type, found.role, found.content[0].text) == (  # type: ignore[union-attr]
                "message", "assistant", answered.output_text,
            )  # fmt: skip
            found = await sdk.conversations.items.retrieve(call.id, conversation_id=cid)
            assert found.type == "function_call" and found.call_id == call.call_id  # type: ignore[union-attr]
            listed = await sdk.conversations.items.list(cid, order="asc")
            ids = [i.id for i in listed.data]
            assert ids[1] == message.id and ids[3] == call.id
            after = await sdk.conversations.items.list(cid, order="asc", after=message.id)
            assert [i.id for i in after.data] == ids[2:]
            await sdk.conversations.items.delete(call.id, conversation_id=cid)
            with pytest.raises(openai.NotFoundError):
                await sdk.conversations.items.retrieve(call.id, conversation_id=cid)
            assert [i.id for i in (await sdk.conversations.items.list(cid)).data] == [
                ids[2], ids[1], ids[0],
            ]  # fmt: skip
