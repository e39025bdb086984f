"""Any OpenAI-compatible server (OpenAI, DeepSeek, vLLM, Ollama, llama.cpp, LM Studio, LiteLLM,
OpenRouter, or another aitasks gateway's /openai/v1), through the official `openai` package."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import openai

from aitasks.providers.base import (
    ChatRequest,
    GeneratedImage,
    ImageRequest,
    Provider,
    Usage,
)
from aitasks.providers.failures import from_sdk
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

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        arguments: dict[str, Any] = {
            "model": request.model.upstream_model or request.model.name,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            **{k: request.params[k] for k in PASSED_ON if k in request.params},
        }
        try:
            stream = await self.client.chat.completions.create(**arguments)
            async for chunk in stream:
                if chunk.usage is not None:
                    yield Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content
        except openai.OpenAIError as exc:
            raise from_sdk(self.name, exc, openai) from exc

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
