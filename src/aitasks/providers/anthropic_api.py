"""Anthropic's Messages API (streamed), through the official `anthropic` package: text and thinking
as they come, tool calls (`tool_use` blocks) whole at the end (shapes in `mapping/anthropic.py`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from aitasks.providers.base import ChatPiece, ChatRequest, Provider, Reasoning, ToolCall, Usage
from aitasks.providers.failures import from_sdk
from aitasks.providers.mapping import anthropic as mapping
from aitasks.routing import ModelSpec

# The Messages API requires max_tokens; this is used when the request does not say.
DEFAULT_MAX_TOKENS = 4096


class AnthropicProvider(Provider):
    name = "anthropic"

    def __init__(self, spec: ModelSpec, *, api_key: str | None, base_url: str | None) -> None:
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key or "not-set", base_url=base_url, max_retries=0, timeout=spec.timeout_s
        )

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatPiece]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        arguments: dict[str, Any] = {
            "model": request.model.upstream_model or request.model.name,
            "max_tokens": request.params.get("max_tokens") or DEFAULT_MAX_TOKENS,
            "messages": mapping.messages(request.messages),
            **mapping.request_fields(request),
        }
        if system:
            arguments["system"] = system
        # Sampling settings go as raw body fields: newer SDKs no longer name them as arguments,
        # and the API takes them as it always has.
        sampling = {k: request.params[k] for k in ("temperature", "top_p") if k in request.params}
        if sampling:
            arguments["extra_body"] = sampling
        stop = request.params.get("stop")
        if stop:
            arguments["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        try:
            async with self.client.messages.stream(**arguments) as stream:
                async for event in stream:
                    if event.type == "text" and event.text:
                        yield event.text
                    elif event.type == "thinking" and event.thinking:
                        yield Reasoning(event.thinking)
                final = await stream.get_final_message()
        except anthropic.AnthropicError as exc:
            raise from_sdk(self.name, exc, anthropic) from exc
        for block in final.content:
            if block.type == "tool_use":
                yield ToolCall(block.id, block.name, json.dumps(block.input, ensure_ascii=False))
        yield Usage(final.usage.input_tokens, final.usage.output_tokens)

    async def close(self) -> None:
        await self.client.close()
