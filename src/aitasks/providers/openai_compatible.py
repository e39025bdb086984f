"""Any OpenAI-compatible server (OpenAI, DeepSeek, vLLM, Ollama, llama.cpp, LM Studio, LiteLLM,
OpenRouter, or another aitasks gateway's /openai/v1), through the official `openai` package."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import openai

from aitasks.providers.base import (
    ChatPiece,
    ChatRequest,
    GeneratedImage,
    ImageRequest,
    Provider,
    Reasoning,
    Usage,
)
from aitasks.providers.failures import from_sdk
from aitasks.providers.mapping import openai as mapping
from aitasks.routing import ModelSpec

# Chat parameters the API takes as they are.
PASSED_ON = ("temperature", "top_p", "max_tokens", "stop", "seed", "user")


class OpenAICompatibleProvider(Provider):
    name = "openai"

    def __init__(self, spec: ModelSpec, *, api_key: str | None, base_url: str | None) -> None:
        # Retries are the worker's (classified, with backoff); the SDK's own are turned off.
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url,
            max_retries=0,
            timeout=spec.timeout_s,
        )

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatPiece]:
        keep_reasoning = request.model.reasoning_in_context
        arguments: dict[str, Any] = {
            "model": request.model.upstream_model or request.model.name,
            "messages": [mapping.message(m, reasoning=keep_reasoning) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            **{k: request.params[k] for k in PASSED_ON if k in request.params},
            **mapping.request_fields(request),
        }
        calls = mapping.ToolCallPieces()
        usage: Usage | None = None
        try:
            stream = await self.client.chat.completions.create(**arguments)
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    delta = choice.delta
                    # DeepSeek's (and others') reasoning: a field the SDK keeps as an extra.
                    thought = (delta.model_extra or {}).get("reasoning_content")
                    if thought:
                        yield Reasoning(str(thought))
                    if delta.content:
                        yield delta.content
                    for piece in delta.tool_calls or ():
                        function = piece.function
                        calls.add(
                            piece.index,
                            piece.id,
                            function.name if function else None,
                            function.arguments if function else None,
                        )
        except openai.OpenAIError as exc:
            raise from_sdk(self.name, exc, openai) from exc
        for call in calls.whole():
            yield call
        if usage is not None:
            yield usage

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        width, height = request.size
        try:
            generated = await self.client.images.generate(
                model=request.model.upstream_model or request.model.name,
                prompt=request.prompt,
                n=request.n,
                size=f"{width}x{height}",
                response_format="b64_json",
            )
        except openai.OpenAIError as exc:
            raise from_sdk(self.name, exc, openai) from exc
        return [
            GeneratedImage(base64.b64decode(image.b64_json), "image/png")
            for image in generated.data or []
            if image.b64_json
        ]

    async def close(self) -> None:
        await self.client.close()
