"""Local HTTP servers that speak each provider's wire protocol as its public documentation gives it.

Each records the requests it gets, so a test can check their shape, and misbehaves on demand: a
prompt containing `please 429`, `please 500`, `please 400` or `please hang` gets that answer. A
last user message with `please call` (and tools in the request) is answered with a call of the
first tool (`CALL_ARGS`); `please think` streams reasoning (`THOUGHT`) before the reply; `please
json` answers `JSON_REPLY` instead of `REPLY`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.processes import free_port

REPLY = ["The ", "moon ", "is ", "far."]
JSON_REPLY = ['{"answer": ', "42}"]
THOUGHT = ["Let me ", "think."]
CALL_ARGS = {"city": "Paris"}
HANG_SECONDS = 30


def asked(last: object, marker: str) -> bool:
    """Whether the last message (as the provider shapes it) asks for `marker`."""
    return marker in json.dumps(last)


def reply_of(last: object) -> list[str]:
    return JSON_REPLY if asked(last, "please json") else REPLY


def tiny_png(colour: tuple[int, int, int] = (200, 30, 30)) -> str:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


class FakeServer:
    """A Starlette app served by uvicorn on a thread of its own, on a free loopback port."""

    def __init__(self, routes: list[Route]) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self.app = Starlette(routes=routes)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "fake server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        # Not waiting for requests still in flight: a `please hang` one sleeps for 30 s, and the
        # join below would wait out its 5 s after every such test.
        self.server.force_exit = True
        self.thread.join(5)

    async def record(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.requests.append({"path": request.url.path, "headers": dict(request.headers),
                              "raw_path": request.scope["raw_path"].decode(),
                              "query": dict(request.query_params), "body": body})  # fmt: skip
        return body


async def misbehave(text: str, error: Callable[[int, str], Response]) -> Response | None:
    """The answer a `please ...` marker asks for, if any."""
    if "please hang" in text:
        await asyncio.sleep(HANG_SECONDS)
    if "please 429" in text:
        response = error(429, "Rate limit reached, slow down")
        response.headers["retry-after"] = "1"
        return response
    for status in (500, 400):
        if f"please {status}" in text:
            return error(status, f"the fake says {status}")
    return None


async def sse(events: list[str]) -> AsyncIterator[bytes]:
    for event in events:
        yield event.encode()
        await asyncio.sleep(0.01)


# --- OpenAI: /v1/chat/completions (streamed) and /v1/images/generations -----------------------


def openai_error(status: int, message: str) -> Response:
    kind = {429: "rate_limit_error", 400: "invalid_request_error"}.get(status, "server_error")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": None}},
        status_code=status,
    )


def openai_server() -> FakeServer:
    server: FakeServer

    async def chat(request: Request) -> Response:
        body = await server.record(request)
        failure = await misbehave(json.dumps(body["messages"]), openai_error)
        if failure is not None:
            return failure
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": body["model"]}  # fmt: skip
        last = body["messages"][-1]

        def delta(fields: dict[str, Any]) -> str:
            choice = {"index": 0, "delta": fields, "finish_reason": None}
            return f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"

        if body.get("tools") and last["role"] == "user" and asked(last, "please call"):
            name = body["tools"][0]["function"]["name"]
            arguments = json.dumps(CALL_ARGS)
            events = [
                delta({"tool_calls": [{"index": 0, "id": "call_fake", "type": "function",
                                       "function": {"name": name, "arguments": ""}}]}),
                *(delta({"tool_calls": [{"index": 0, "function": {"arguments": half}}]})
                  for half in (arguments[:5], arguments[5:])),
            ]  # fmt: skip
            finish = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
            events.append(f"data: {json.dumps({**base, 'choices': [finish]})}\n\n")
            events.append("data: [DONE]\n\n")
            return StreamingResponse(sse(events), media_type="text/event-stream")
        events = []
        if asked(last, "please think"):
            events += [delta({"reasoning_content": piece}) for piece in THOUGHT]
        events += [delta({"content": piece}) for piece in reply_of(last)]
        stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
        events.append(f"data: {json.dumps({**base, 'choices': [stop]})}\n\n")
        usage = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
        events.append(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n")
        events.append("data: [DONE]\n\n")
        return StreamingResponse(sse(events), media_type="text/event-stream")

    async def images(request: Request) -> Response:
        body = await server.record(request)
        failure = await misbehave(body["prompt"], openai_error)
        if failure is not None:
            return failure
        data = [{"b64_json": tiny_png()} for _ in range(body.get("n", 1))]
        return JSONResponse({"created": 1, "data": data})

    server = FakeServer([
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/images/generations", images, methods=["POST"]),
    ])  # fmt: skip
    return server


# --- Gemini: models/{model}:streamGenerateContent?alt=sse and :generateContent -------------------


def gemini_error(status: int, message: str) -> Response:
    reason = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT"}.get(status, "INTERNAL")
    return JSONResponse(
        {"error": {"code": status, "message": message, "status": reason}}, status_code=status
    )


def gemini_server() -> FakeServer:
    server: FakeServer

    async def generate(request: Request) -> Response:
        body = await server.record(request)
        failure = await misbehave(json.dumps(body["contents"]), gemini_error)
        if failure is not None:
            return failure
        model, _, method = request.path_params["call"].partition(":")
        if method == "generateContent":
            parts = [{"text": "Here it is"}, {"inlineData": {"mimeType": "image/png",
                                                             "data": tiny_png()}}]  # fmt: skip
            return JSONResponse({"candidates": [{"content": {"role": "model", "parts": parts}}]})
        last = body["contents"][-1]
        if (
            body.get("tools")
            and "functionResponse" not in json.dumps(last)
            and asked(last, "please call")
        ):
            name = body["tools"][0]["functionDeclarations"][0]["name"]
            call = {"functionCall": {"name": name, "args": CALL_ARGS}}
            chunk = {"candidates": [{"content": {"role": "model", "parts": [call]},
                                     "finishReason": "STOP"}], "modelVersion": model}  # fmt: skip
            return StreamingResponse(
                sse([f"data: {json.dumps(chunk)}\r\n\r\n"]), media_type="text/event-stream"
            )
        pieces = (
            [{"text": p, "thought": True} for p in THOUGHT] if asked(last, "please think") else []
        )
        pieces += [{"text": p} for p in reply_of(last)]
        events = []
        for i, part in enumerate(pieces):
            chunk = {
                "candidates": [{"content": {"role": "model", "parts": [part]}}],
                "modelVersion": model,
            }
            if i == len(pieces) - 1:
                chunk["candidates"][0]["finishReason"] = "STOP"
                chunk["usageMetadata"] = {"promptTokenCount": 9, "candidatesTokenCount": 4,
                                          "totalTokenCount": 13}  # fmt: skip
            events.append(f"data: {json.dumps(chunk)}\r\n\r\n")
        return StreamingResponse(sse(events), media_type="text/event-stream")

    server = FakeServer([Route("/v1beta/models/{call:path}", generate, methods=["POST"])])
    return server


# --- Anthropic: /v1/messages with stream=true ----------------------------------------------------


def anthropic_error(status: int, message: str) -> Response:
    kind = {429: "rate_limit_error", 400: "invalid_request_error"}.get(status, "api_error")
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}}, status_code=status
    )


def anthropic_server() -> FakeServer:
    server: FakeServer

    async def messages(request: Request) -> Response:
        body = await server.record(request)
        failure = await misbehave(json.dumps(body["messages"]), anthropic_error)
        if failure is not None:
            return failure

        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                   "model": body["model"], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 12, "output_tokens": 1}}  # fmt: skip
        last = body["messages"][-1]
        events = [event("message_start", {"message": message})]
        index, stop_reason = 0, "end_turn"
        if asked(last, "please think"):
            events += [
                event("content_block_start", {"index": index, "content_block": {
                    "type": "thinking", "thinking": "", "signature": ""}}),
                *(event("content_block_delta", {"index": index, "delta": {
                    "type": "thinking_delta", "thinking": p}}) for p in THOUGHT),
                event("content_block_delta", {"index": index, "delta": {
                    "type": "signature_delta", "signature": "sig"}}),
                event("content_block_stop", {"index": index}),
            ]  # fmt: skip
            index += 1
        if (
            body.get("tools")
            and "tool_result" not in json.dumps(last)
            and asked(last, "please call")
        ):
            arguments = json.dumps(CALL_ARGS)
            events += [
                event("content_block_start", {"index": index, "content_block": {
                    "type": "tool_use", "id": "toolu_fake", "name": body["tools"][0]["name"],
                    "input": {}}}),
                *(event("content_block_delta", {"index": index, "delta": {
                    "type": "input_json_delta", "partial_json": half}})
                  for half in (arguments[:5], arguments[5:])),
                event("content_block_stop", {"index": index}),
            ]  # fmt: skip
            stop_reason = "tool_use"
        else:
            events += [
                event("content_block_start",
                      {"index": index, "content_block": {"type": "text", "text": ""}}),
                *(event("content_block_delta", {"index": index, "delta": {
                    "type": "text_delta", "text": p}}) for p in reply_of(last)),
                event("content_block_stop", {"index": index}),
            ]  # fmt: skip
        events += [
            event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                    "usage": {"output_tokens": 4}}),
            event("message_stop", {}),
        ]  # fmt: skip
        return StreamingResponse(sse(events), media_type="text/event-stream")

    server = FakeServer([Route("/v1/messages", messages, methods=["POST"])])
    return server


# --- AUTOMATIC1111 / Forge: /sdapi/v1/txt2img ---------------------------------------------------


def sd_error(status: int, message: str) -> Response:
    return JSONResponse({"error": "Error", "detail": message, "body": "", "errors": ""},
                        status_code=status)  # fmt: skip


def sd_webui_server() -> FakeServer:
    server: FakeServer

    async def txt2img(request: Request) -> Response:
        body = await server.record(request)
        failure = await misbehave(body["prompt"], sd_error)
        if failure is not None:
            return failure
        images = [tiny_png((i * 40, 100, 100)) for i in range(body.get("batch_size", 1))]
        return JSONResponse({"images": images, "parameters": body, "info": "{}"})

    server = FakeServer([Route("/sdapi/v1/txt2img", txt2img, methods=["POST"])])
    return server
