"""Tool calling on /openai/v1/chat/completions through the official SDK (plain, and streamed with
the `.stream()` helper), the mock's deterministic choices, a LangChain agent loop, the loop kept in
the conversation with its structure, and every bad input refused with nothing written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from aitasks.config import Settings
from tests.support.keyed_app import keyed_app
from tests.support.sdk import BASE_URL, async_openai
from tests.support.services import row_counts

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "level": {"enum": [3, 4]},
                "ratio": {"type": "number"},
                "exact": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {"type": "object"},
                "note": {"type": "string"},
            },
            "required": ["city", "unit", "days", "level", "ratio", "exact", "tags", "where"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
TOOLS: Any = [TIME, WEATHER]


def ask(text: str) -> Any:
    return [{"role": "user", "content": text}]


async def test_the_mock_calls_the_tool_named_in_the_text_with_filled_arguments(
    client: httpx.AsyncClient,
) -> None:
    sdk = async_openai(client)
    reply = await sdk.chat.completions.create(
        model="mock-chat", messages=ask("What does get_weather say for Paris?"), tools=TOOLS
    )
    (choice,) = reply.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"  # named in the text (though not the first tool)
    # Each required parameter: an enum's first value whatever its type, else by type.
    assert json.loads(call.function.arguments) == {
        "city": "mock", "unit": "celsius", "days": 1, "level": 3, "ratio": 1.0, "exact": True,
        "tags": [], "where": {},
    }  # fmt: skip
    again = await sdk.chat.completions.create(
        model="mock-chat", messages=ask("What does get_weather say for Paris?"), tools=TOOLS
    )
    assert again.choices[0].message.tool_calls == choice.message.tool_calls  # deterministic


@pytest.mark.parametrize(
    ("text", "choice", "called"),
    [
        ("hello there", "auto", None),  # no tool named: it answers in text
        ("hello there", None, None),
        ("hello there", "required", "get_time"),  # required: the first tool
        ("use get_weather", "none", None),  # none: never a call
        ("use get_weather", {"type": "function", "function": {"name": "get_time"}}, "get_time"),
    ],
)
async def test_tool_choice(
    client: httpx.AsyncClient, text: str, choice: Any, called: str | None
) -> None:
    sdk = async_openai(client)
    extra = {} if choice is None else {"tool_choice": choice}
    reply = await sdk.chat.completions.create(
        model="mock-chat", messages=ask(text), tools=TOOLS, **extra
    )
    message = reply.choices[0].message
    if called is None:
        assert message.tool_calls is None and reply.choices[0].finish_reason == "stop"
        assert message.content and message.content.startswith("Mock reply")
    else:
        assert [c.function.name for c in message.tool_calls or []] == [called]


async def test_the_results_are_answered_and_the_loop_is_kept(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    sdk = async_openai(client)
    messages = ask("get_weather for Oslo, please")
    first = await sdk.chat.completions.create(model="mock-chat", messages=messages, tools=TOOLS)
    call = (first.choices[0].message.tool_calls or [])[0]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Oslo: -3C and snowing"},
    ]
    second = await sdk.chat.completions.create(model="mock-chat", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert "Oslo: -3C and snowing" in (second.choices[0].message.content or "")
    # The exchange is kept in its conversation, with its structure.
    conversation = second.model_extra["conversation_id"]  # type: ignore[index]
    history = (await client.get(f"/v1/conversations/{conversation}/history")).json()["messages"]
    assert [m["role"] for m in history] == ["tool", "assistant"]
    assert history[0]["tool_call_id"] == call.id
    assert history[0]["content"] == "Oslo: -3C and snowing"
    assert "tool_calls" not in history[1]  # a plain reply shows no structure


async def test_a_conversation_runs_the_loop_from_its_history(client: httpx.AsyncClient) -> None:
    sdk = async_openai(client)
    first = await sdk.chat.completions.create(
        model="mock-chat", messages=ask("get_weather for Rome"), tools=TOOLS
    )
    conversation = first.model_extra["conversation_id"]  # type: ignore[index]
    call = (first.choices[0].message.tool_calls or [])[0]
    result = {"role": "tool", "tool_call_id": call.id, "content": "Rome: 18C"}
    second = await sdk.chat.completions.create(
        model="mock-chat",
        messages=[result],  # type: ignore[list-item]
        tools=TOOLS,
        extra_body={"conversation_id": conversation},
    )
    assert "Rome: 18C" in (second.choices[0].message.content or "")
    assert "1 earlier turn " in (second.choices[0].message.content or "")
    history = (await client.get(f"/v1/conversations/{conversation}/history")).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[1]["content"] == ""
    assert history[1]["tool_calls"] == [
        {"id": call.id, "type": "function",
         "function": {"name": "get_weather", "arguments": call.function.arguments}}
    ]  # fmt: skip
    assert history[2]["tool_call_id"] == call.id
    assert set(history[0]) == {"role", "content", "images", "task_id", "created_at"}
    task = (await client.get(f"/v1/tasks/{history[1]['task_id']}")).json()
    assert task["result"] == "" and task["tool_calls"] == history[1]["tool_calls"]


async def test_streamed_tool_calls_accumulate_in_the_sdks_helper(
    client: httpx.AsyncClient,
) -> None:
    sdk = async_openai(client)
    deltas = []
    async with sdk.chat.completions.stream(
        model="mock-chat", messages=ask("get_weather in Lima"), tools=TOOLS
    ) as stream:
        async for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                deltas.append(event.arguments_delta)
        final = await stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["days"] == 1
    assert "".join(deltas) == call.function.arguments
    plain = await sdk.chat.completions.create(
        model="mock-chat", messages=ask("get_weather in Lima"), tools=TOOLS
    )
    assert (plain.choices[0].message.tool_calls or [])[0].id == call.id


async def test_a_langchain_agent_calls_a_python_function_and_answers(
    client: httpx.AsyncClient,
) -> None:
    ran: list[str] = []

    @tool
    def multiply(first: str, second: int) -> str:
        """Multiply a word by a number of times."""
        ran.append(f"{first}*{second}")
        return (first + " ") * second

    model = ChatOpenAI(
        model="mock-chat",
        base_url=BASE_URL,
        api_key="unused",  # type: ignore[arg-type]
        max_retries=0,
        http_async_client=httpx.AsyncClient(transport=client._transport, timeout=30),
    ).bind_tools([multiply])
    messages: list[Any] = [HumanMessage("please multiply a word")]
    for _ in range(4):  # the agent loop: call the model, run what it asks for, until it answers
        reply = await model.ainvoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            output = multiply.invoke(call["args"])
            messages.append(ToolMessage(output, tool_call_id=call["id"]))
    assert ran == ["mock*1"]
    assert isinstance(messages[-1].content, str) and "mock " in messages[-1].content
    assert messages[-1].content.startswith("Mock reply to the tool results")


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
         400, "tools", "is not a JSON schema"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
         400, "tools", ""),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
         400, "tools", "letters, digits"),
        ({"tools": [TIME, TIME]}, 400, "tools", "same name"),
        ({"tools": [{"type": "code_interpreter"}]}, 400, "tools", "only function tools"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         400, "tool_choice", "not one of the tools"),
        ({"tool_choice": "required"}, 400, "tool_choice", "needs tools"),
        ({"model": "deepseek-reasoner", "tools": TOOLS},
         400, "tools", "model 'deepseek-reasoner' does not support tools"),
        ({"messages": [{"role": "user", "content": "x"},
                       {"role": "tool", "tool_call_id": "call_nobody", "content": "r"}]},
         400, "tool_call_id", "answers no pending tool call"),
        ({"messages": [{"role": "user", "content": "x"},
                       {"role": "assistant", "tool_calls": [
                           {"id": "c1", "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"}},
                           {"id": "c2", "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"}}]},
                       {"role": "tool", "tool_call_id": "c1", "content": "r"}]},
         400, "tool_call_id", "have no result"),
        ({"messages": [{"role": "tool", "tool_call_id": "c0", "content": "r"},
                       {"role": "user", "content": "x"}]},
         400, "messages", "which no assistant message before it made"),
        ({"messages": [{"role": "tool", "content": "r"}]}, 400, "messages", "needs tool_call_id"),
    ],
)  # fmt: skip
async def test_bad_tool_input_is_refused_and_writes_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    body: dict[str, Any],
    status: int,
    param: str,
    words: str,
) -> None:
    request = {"model": "mock-chat", "messages": ask("hi"), **body}
    before = row_counts(settings.sqlalchemy_url)
    response = await client.post("/openai/v1/chat/completions", json=request)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["param"] or "").startswith(param) and words in error["message"], error
    assert row_counts(settings.sqlalchemy_url) == before


async def test_an_unknown_call_id_in_a_conversation_is_refused(client: httpx.AsyncClient) -> None:
    sdk = async_openai(client)
    first = await sdk.chat.completions.create(
        model="mock-chat", messages=ask("get_time now"), tools=TOOLS
    )
    conversation = first.model_extra["conversation_id"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.chat.completions.create(
            model="mock-chat",
            messages=[{"role": "tool", "tool_call_id": "call_made_up", "content": "x"}],
            extra_body={"conversation_id": conversation},
        )
    assert "answers no pending tool call" in refused.value.message


async def test_a_clients_context_counts_toward_its_keys_daily_tokens(tmp_path: Path) -> None:
    async with keyed_app("embedded", tmp_path) as app:  # no worker: tasks stay in flight
        headers = await app.key("counted", daily_tokens=600)
        context = [{"role": "system", "content": "x" * 4000},  # about 1,000 tokens
                   {"role": "assistant", "content": "ok"}]  # fmt: skip
        body = {"model": "mock-chat", "max_tokens": 1, "messages": [*context, *ask("hi")]}
        path = "/openai/v1/chat/completions"
        # Admitted (nothing reserved before it), it reserves its context's tokens too, then
        # waits for a worker that never comes.
        first = asyncio.create_task(app.http.post(path, json=body, headers=headers))
        await asyncio.sleep(0.5)
        refused = await app.http.post(path, json=body, headers=headers)
        first.cancel()
        assert refused.status_code == 429, refused.text
        assert "daily token quota" in refused.json()["error"]["message"]
