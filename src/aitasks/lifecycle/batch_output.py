"""A batch's results as JSONL, one line per request, made from its tasks a page at a time (never
all held at once): OpenAI's output file (the requests answered) and error file (the others), by
`custom_id`, and the seed's results (every line in order, as it stands now).

An OpenAI file's bytes are made again whenever it is read, from tasks that no longer change, so
they are the same each time (links are the gateway's plain file URLs, fetched with a key); its
size is counted once, when the batch ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from aitasks.links import Links
from aitasks.services import Services
from aitasks.store import batches as store
from aitasks.store.models import Batch, Task, TaskStatus, as_utc

# The purposes of a batch's result files, whose bytes are made from its tasks when read.
RESULT_PURPOSES = frozenset({"batch_output", "batch_error"})
# The HTTP status a request that failed is answered with in the error file, by its error type.
FAILURE_STATUS = {
    "provider_bad_request": 400,
    "invalid_request": 400,
    "provider_rate_limited": 429,
    "provider_timeout": 504,
    "timeout": 504,
}
ENDED_UNANSWERED = {
    TaskStatus.EXPIRED: (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    TaskStatus.CANCELLED: ("batch_cancelled", "This request was cancelled with its batch."),
}


def _created(task: Task) -> int:
    created = as_utc(task.created_at)
    return int(created.timestamp()) if created else 0


def _usage(task: Task) -> dict[str, Any] | None:
    return task.usage


def _chat_body(task: Task) -> dict[str, Any]:
    result = task.result or {}
    message: dict[str, Any] = {
        "role": "assistant", "content": result.get("text"), "refusal": None,
    }  # fmt: skip
    finish = "stop"
    if result.get("tool_calls"):
        message["tool_calls"] = [
            {"id": c.get("id"), "type": "function",
             "function": {"name": c.get("name"), "arguments": c.get("arguments", "{}")}}
            for c in result["tool_calls"]
        ]  # fmt: skip
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-{task.id}", "object": "chat.completion", "created": _created(task),
        "model": task.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _usage(task), "system_fingerprint": None,
    }  # fmt: skip


def _responses_body(task: Task) -> dict[str, Any]:
    text = (task.result or {}).get("text") or ""
    usage = task.usage or {}
    return {
        "id": f"resp_{task.id}", "object": "response", "created_at": _created(task),
        "status": "completed", "model": task.model, "error": None,
        "output": [{"type": "message", "id": f"msg_{task.id}", "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "output_text": text,
        "usage": {"input_tokens": usage.get("prompt_tokens", 0),
                  "output_tokens": usage.get("completion_tokens", 0),
                  "total_tokens": usage.get("total_tokens", 0)},
    }  # fmt: skip


def _images_body(task: Task, links: Links) -> dict[str, Any]:
    files = (task.result or {}).get("files", [])
    return {"created": _created(task),
            "data": [{"url": links.file(f), "revised_prompt": None} for f in files]}  # fmt: skip


def openai_line(task: Task, endpoint: str, links: Links) -> tuple[str, dict[str, Any]]:
    """The request's line in OpenAI's output (`output`) or error (`error`) file."""
    line: dict[str, Any] = {"id": f"batch_req_{task.id}", "custom_id": task.custom_id}
    if task.status == TaskStatus.SUCCESS:
        if endpoint == "/v1/images/generations":
            body = _images_body(task, links)
        elif endpoint == "/v1/responses":
            body = _responses_body(task)
        else:
            body = _chat_body(task)
        response = {"status_code": 200, "request_id": task.id, "body": body}
        return "output", line | {"response": response, "error": None}
    unanswered = ENDED_UNANSWERED.get(TaskStatus(task.status))
    if unanswered is not None:
        code, message = unanswered
        return "error", line | {"response": None, "error": {"code": code, "message": message}}
    error = task.error or {}
    code = str(error.get("type", "provider_error"))
    body = {"error": {"message": str(error.get("message", "failed")), "type": code,
                      "param": None, "code": code}}  # fmt: skip
    response = {"status_code": FAILURE_STATUS.get(code, 502), "request_id": task.id, "body": body}
    return "error", line | {"response": response, "error": None}


def seed_line(task: Task, links: Links) -> dict[str, Any]:
    """The request's line in the seed's results: where it stands, and its answer."""
    result: Any = None
    if task.result is not None:
        files = task.result.get("files")
        result = [links.file(f) for f in files] if files else task.result.get("text")
    return {
        "index": task.batch_index, "custom_id": task.custom_id, "task_id": task.id,
        "conversation_id": task.conversation_id, "status": task.status, "result": result,
        "error": task.error,
    }  # fmt: skip


async def _tasks(services: Services, batch_id: str) -> AsyncIterator[Task]:
    """The batch's tasks in line order, a page per short read (no transaction held between)."""
    after = -1
    while True:
        async with services.db.read_connection() as connection:
            page = await store.lines(connection, batch_id, after, store.PAGE)
        for task in page:
            yield task
        if len(page) < store.PAGE:
            return
        after = page[-1].batch_index or 0


def _encode(line: dict[str, Any]) -> bytes:
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def file_links(services: Services) -> Links:
    """The links an OpenAI result file carries: the gateway's plain URLs (the same each time the
    file is made; fetched with a key)."""
    return Links(services.settings.public_url)


async def result_file(services: Services, batch: Batch, which: str) -> AsyncIterator[bytes]:
    """OpenAI's output (`which` = "output") or error file of the batch, a page at a time."""
    links = file_links(services)
    buffer: list[bytes] = []
    async for task in _tasks(services, batch.id):
        kind, line = openai_line(task, batch.endpoint, links)
        if kind == which:
            buffer.append(_encode(line))
        if len(buffer) >= store.PAGE:
            yield b"".join(buffer)
            buffer.clear()
    if buffer:
        yield b"".join(buffer)


async def result_size(services: Services, batch: Batch, which: str) -> int:
    """The bytes of the batch's output or error file (made once, to count them)."""
    return sum([len(piece) async for piece in result_file(services, batch, which)])


async def seed_results(
    services: Services, batch: Batch, links: Links, *, only: Callable[[Task], bool] | None = None
) -> AsyncIterator[bytes]:
    """The seed's results of the batch: every line in order, as it stands now."""
    buffer: list[bytes] = []
    async for task in _tasks(services, batch.id):
        if only is None or only(task):
            buffer.append(_encode(seed_line(task, links)))
        if len(buffer) >= store.PAGE:
            yield b"".join(buffer)
            buffer.clear()
    if buffer:
        yield b"".join(buffer)
