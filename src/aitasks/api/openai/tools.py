"""Chat Completions' structure both ways: a request's messages, tools and `response_format` as a
`ChatTurn`, and a task's reply as OpenAI's message (`tool_calls`, `reasoning_content`) or stream
deltas (`delta.tool_calls`, as the SDK's `.stream()` helper accumulates them)."""

from __future__ import annotations

from typing import Any

from aitasks.api.openai.wire import ChatCompletionRequest, ChatMessageIn
from aitasks.api.tool_shapes import response_format_of, tool_choice_of, tools_of
from aitasks.config import Settings
from aitasks.errors import InvalidRequest
from aitasks.lifecycle.chat_input import ChatTurn, PendingImage, pending_image
from aitasks.store.models import Task

# OpenAI's roles, as the context keeps them.
ROLES = {"developer": "system"}


def chat_turn(body: ChatCompletionRequest, settings: Settings) -> tuple[str, ChatTurn]:
    """The new input's text and the turn: the last message from the user (its text and images),
    or the tool messages that end the list (the results of the calls before them); the messages
    before are the context, in their structure."""
    messages = body.messages
    results = _trailing_results(messages)
    earlier = messages[: len(messages) - len(results)] if results else messages[:-1]
    last = messages[-1]
    images: list[PendingImage] = []
    prompt = ""
    if not results:
        if last.role != "user":
            raise InvalidRequest(
                "the last message must come from the user, or be tool results", param="messages"
            )
        _refuse_other_parts(last, len(messages) - 1)
        prompt = last.text()
        images = [
            pending_image(url, settings, f"messages[{len(messages) - 1}].content")
            for url in last.image_urls()
        ]
        if not prompt.strip() and not images:
            raise InvalidRequest("the last message has no text", param="messages")
    turn = ChatTurn(
        tools=tools_of(body.tools),
        tool_choice=tool_choice_of(body.tool_choice),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=response_format_of(body.response_format),
        images=images,
        tool_results=results or None,
        context=[_context_message(m, i, settings) for i, m in enumerate(earlier)],
    )
    return turn.prompt(prompt), turn


def _trailing_results(messages: list[ChatMessageIn]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.role != "tool":
            break
        results.insert(0, _result(message, index))
    return results


def _result(message: ChatMessageIn, index: int) -> dict[str, Any]:
    if not message.tool_call_id:
        raise InvalidRequest(
            f"messages[{index}] (a tool message) needs tool_call_id", param="messages"
        )
    result: dict[str, Any] = {"tool_call_id": message.tool_call_id, "content": message.text()}
    if message.name:
        result["name"] = message.name
    return result


def _refuse_other_parts(message: ChatMessageIn, index: int) -> None:
    if isinstance(message.content, list):
        for part in message.content:
            if part.type not in ("text", "image_url"):
                raise InvalidRequest(
                    f"messages[{index}] has a content part of type {part.type!r}; text and "
                    "image_url are served",
                    param="messages",
                )


def _context_message(message: ChatMessageIn, index: int, settings: Settings) -> dict[str, Any]:
    stored: dict[str, Any] = {
        "role": ROLES.get(message.role, message.role),
        "content": message.text(),
    }
    if message.role == "user":
        _refuse_other_parts(message, index)
        param = f"messages[{index}].content"
        images = [pending_image(url, settings, param) for url in message.image_urls()]
        if images:
            stored["images"] = images
    if message.role == "assistant" and message.tool_calls:
        stored["tool_calls"] = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in message.tool_calls
        ]
    if message.role == "tool":
        stored.update(_result(message, index))
    return stored


def openai_calls(calls: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Stored tool calls in OpenAI's shape."""
    return [
        {"id": c["id"], "type": "function",
         "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls or ()
    ]  # fmt: skip


def completion_message(task: Task) -> tuple[dict[str, Any], str]:
    """The assistant message of a succeeded task, and its finish reason."""
    result = task.result or {}
    calls = openai_calls(result.get("tool_calls"))
    text = result.get("text", "")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if result.get("reasoning"):
        message["reasoning_content"] = result["reasoning"]
    return message, "tool_calls" if calls else "stop"


def tool_call_deltas(index: int, call: dict[str, Any]) -> list[dict[str, Any]]:
    """A tool call as stream deltas: its id and name first, then its arguments."""
    return [
        {"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                         "function": {"name": call["name"], "arguments": ""}}]},
        {"tool_calls": [{"index": index, "function": {"arguments": call["arguments"]}}]},
    ]  # fmt: skip
