"""The mock provider: deterministic replies and real PNGs, for running without keys and for tests.

A chat reply names how many earlier turns of context it was given, and a digest of them, so a test
can prove the history reached the model. Tools, structured output and images are answered as
`mock_answers.py` says. Its latency is spread over its words, so a reader of the
stream sees it arrive piece by piece.

It fails on demand, so that retries and dead letters can be shown without a real provider: at
random with `AITASKS_MOCK_FAIL_RATE` (a retryable 503), and when the prompt carries a marker:
`[fail:retryable]` (a 503 every time), `[fail:fatal]` (a 400), `[fail:429]` (rate limited, with a
`Retry-After`), `[fail-first:N]` (a 503 on the first N attempts, then success), `[fail-after:N]`
(the first attempt streams N pieces of its reply, then a 503; later attempts succeed), and
`[fail-on:MODEL]` (a 503 whenever the model asked is MODEL, to drive fallbacks and circuit
breakers), and `[latency:MS]` (this reply takes MS milliseconds).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import random
import re
import textwrap
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from aitasks.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
)
from aitasks.providers.base import (
    ChatMessage,
    ChatPiece,
    ChatRequest,
    GeneratedImage,
    ImageRequest,
    Provider,
)
from aitasks.providers.mock_answers import answer, text_reply

MARKER = re.compile(r"\[(fail|fail-first|fail-after|fail-on|latency):([a-z0-9.-]+)\]")
# What a `[fail:429]` mock answers as its Retry-After, in seconds.
MOCK_RETRY_AFTER = 0.2

# Pillow's built-in font has no Chinese, Japanese or Korean glyphs; these Debian fonts do
# (fonts-wqy-zenhei, fonts-noto-cjk). The first one present is used.
CJK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
)


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in CJK_FONTS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def mock_reply(messages: Sequence[ChatMessage]) -> str:
    """The text reply the mock gives: a pure function of the messages it is sent."""
    return text_reply(messages)


def _failure(marker: str, value: str, attempt: int) -> ProviderError | None:
    if marker == "fail" and value == "retryable":
        return ProviderServerError("mock provider: 503 service unavailable")
    if marker == "fail" and value == "fatal":
        return ProviderBadRequest("mock provider: 400 the request was refused")
    if marker == "fail" and value == "429":
        return ProviderRateLimited(
            "mock provider: 429 too many requests", retry_after=MOCK_RETRY_AFTER
        )
    if marker == "fail-first" and value.isdigit() and attempt <= int(value):
        return ProviderServerError(f"mock provider: 503 on attempt {attempt} of the first {value}")
    return None


def _fail_after(prompt: str) -> int | None:
    """N of a `[fail-after:N]` marker: how many pieces the first attempt streams before failing."""
    for marker, value in MARKER.findall(prompt):
        if marker == "fail-after" and value.isdigit():
            return int(value)
    return None


class MockProvider(Provider):
    name = "mock"

    def __init__(self, *, latency_ms: int, fail_rate: float = 0.0) -> None:
        self.latency_s = latency_ms / 1000
        self.fail_rate = fail_rate

    def _prepare(self, prompt: str, attempt: int, model: str) -> float:
        """Raise the failure the prompt asks for; return this reply's latency in seconds."""
        latency = self.latency_s
        for marker, value in MARKER.findall(prompt):
            if marker == "latency" and value.isdigit():
                latency = int(value) / 1000
            if marker == "fail-on" and value == model:
                raise ProviderServerError(f"mock provider: 503 from {model}")
            failure = _failure(marker, value, attempt)
            if failure is not None:
                raise failure
        if self.fail_rate and random.random() < self.fail_rate:
            raise ProviderServerError("mock provider: 503 (AITASKS_MOCK_FAIL_RATE)")
        return latency

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatPiece]:
        prompt = request.messages[-1].content
        latency = self._prepare(prompt, request.attempt, request.model.name)
        reply = answer(request)
        if reply.call is not None:
            if latency:
                await asyncio.sleep(latency)
            yield reply.call
            return
        words = reply.text.split(" ")
        pause = latency / len(words)
        for index, word in enumerate(words):
            if pause:
                await asyncio.sleep(pause)
            if request.attempt == 1 and index == _fail_after(prompt):
                raise ProviderServerError(f"mock provider: 503 after {index} pieces of the reply")
            yield word if index == len(words) - 1 else word + " "

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        latency = self._prepare(request.prompt, request.attempt, request.model.name)
        if latency:
            await asyncio.sleep(latency)
        return [
            GeneratedImage(render_png(request.prompt, request.size, variant=i), "image/png")
            for i in range(request.n)
        ]


def render_png(prompt: str, size: tuple[int, int], *, variant: int = 0) -> bytes:
    """A PNG that shows the prompt written over a pattern whose colours come from the prompt."""
    seed = hashlib.sha256(f"{variant}:{prompt}".encode()).digest()
    width, height = size
    image = Image.new("RGB", size, tuple(seed[0:3]))
    draw = ImageDraw.Draw(image)
    stripe = max(8, width // 16)
    for i, x in enumerate(range(-height, width, stripe)):
        colour = tuple(seed[3 + (i % 9) * 3 : 6 + (i % 9) * 3])
        draw.polygon(
            [
                (x, 0),
                (x + stripe // 2, 0),
                (x + stripe // 2 + height, height),
                (x + height, height),
            ],
            fill=colour,
        )
    for i in range(6):
        cx, cy = seed[i + 10] * width // 256, seed[i + 16] * height // 256
        radius = 10 + seed[i + 22] % (width // 6)
        draw.ellipse(
            (cx - radius, cy - radius, cx + radius, cy + radius),
            outline=(255, 255, 255),
            width=3,
        )
    font = _font(max(12, width // 20))
    lines = textwrap.wrap(prompt, width=28)[:6] or ["(empty prompt)"]
    text = "\n".join(lines)
    box = draw.multiline_textbbox((0, 0), text, font=font, align="center")
    text_w, text_h = box[2] - box[0], box[3] - box[1]
    left, top = (width - text_w) // 2, (height - text_h) // 2
    draw.rounded_rectangle(
        (left - 16, top - 16, left + text_w + 16, top + text_h + 16), radius=12, fill=(0, 0, 0)
    )
    draw.multiline_text((left, top - box[1]), text, font=font, fill=(255, 255, 255), align="center")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
