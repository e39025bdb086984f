"""Google's Gemini API over REST: `streamGenerateContent` (SSE) for chat, `generateContent` with
image output for image models. The base URL is configurable (`base_url` in the model table)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aitasks.errors import ProviderBadRequest
from aitasks.providers import http
from aitasks.providers.base import (
    ChatPiece,
    ChatRequest,
    GeneratedImage,
    ImageRequest,
    Provider,
    Reasoning,
    ToolCall,
    Usage,
)
from aitasks.providers.mapping import gemini as mapping
from aitasks.routing import ModelSpec

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
# Chat parameters, by their names in Gemini's generationConfig.
GENERATION_CONFIG = {
    "temperature": "temperature",
    "top_p": "topP",
    "max_tokens": "maxOutputTokens",
    "seed": "seed",
}


def gemini_body(request: ChatRequest) -> dict[str, Any]:
    """A chat request as Gemini wants it: system text apart, assistant turns as role "model",
    images, calls and results as parts (`mapping/gemini.py`)."""
    system = [m.content for m in request.messages if m.role == "system"]
    config = {
        gemini: request.params[ours]
        for ours, gemini in GENERATION_CONFIG.items()
        if ours in request.params
    }
    stop = request.params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fields, structured = mapping.request_fields(request)
    config.update(structured)
    body: dict[str, Any] = {
        "contents": mapping.contents(request.messages),
        "generationConfig": config,
        **fields,
    }
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    return body


def model_path(spec: ModelSpec) -> str:
    """The model's resource path, its name escaped whole: a name is never a path of its own."""
    return f"/v1beta/models/{quote(spec.upstream_model or spec.name, safe='')}"


class GeminiProvider(Provider):
    name = "gemini"

    def __init__(self, spec: ModelSpec, *, api_key: str | None, base_url: str | None) -> None:
        self.client = http.client(
            (base_url or DEFAULT_BASE_URL).rstrip("/"),
            spec.timeout_s,
            headers={"x-goog-api-key": api_key or ""},
        )

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatPiece]:
        url = f"{model_path(request.model)}:streamGenerateContent"
        usage: dict[str, Any] = {}
        calls: list[ToolCall] = []
        with http.translated_errors(self.name):
            async with self.client.stream(
                "POST", url, params={"alt": "sse"}, json=gemini_body(request)
            ) as response:
                await http.raise_for_status(self.name, response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    chunk = json.loads(line[5:])
                    usage = chunk.get("usageMetadata") or usage
                    for candidate in chunk.get("candidates", []):
                        for part in candidate.get("content", {}).get("parts", []):
                            if "functionCall" in part:
                                calls.append(mapping.tool_call(part, len(calls)))
                            elif part.get("text") and part.get("thought"):
                                yield Reasoning(part["text"])
                            elif part.get("text"):
                                yield part["text"]
        for call in calls:
            yield call
        if usage:
            yield Usage(usage.get("promptTokenCount", 0), usage.get("candidatesTokenCount", 0))

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        body = {
            "contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
            "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]},
        }
        images: list[GeneratedImage] = []
        with http.translated_errors(self.name):
            for _ in range(request.n):
                response = await self.client.post(
                    f"{model_path(request.model)}:generateContent", json=body
                )
                await http.raise_for_status(self.name, response)
                for candidate in response.json().get("candidates", []):
                    for part in candidate.get("content", {}).get("parts", []):
                        inline = part.get("inlineData") or part.get("inline_data")
                        if inline:
                            images.append(
                                GeneratedImage(
                                    base64.b64decode(inline["data"]),
                                    inline.get("mimeType", "image/png"),
                                )
                            )
        if not images:
            raise ProviderBadRequest(f"gemini: model {request.model.name!r} returned no image")
        return images

    async def close(self) -> None:
        await self.client.aclose()
