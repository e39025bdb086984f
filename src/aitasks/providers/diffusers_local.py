"""Stable Diffusion run in the worker itself, from a local model folder (`aitasks[diffusers]`).

The pipeline is loaded once per worker, on the GPU when there is one, else the CPU; generation runs
in a thread, and a cancelled task stops it at the next denoising step.
"""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any

from aitasks.errors import ProviderBadRequest
from aitasks.providers.base import GeneratedImage, ImageRequest, Provider
from aitasks.routing import ModelSpec

DEFAULT_STEPS = 25


class Interrupted(Exception):
    """Raised inside the pipeline's step callback to stop a cancelled generation."""


class DiffusersProvider(Provider):
    name = "diffusers"

    def __init__(self, spec: ModelSpec, *, api_key: str | None, base_url: str | None) -> None:
        if not spec.model_path:
            raise ProviderBadRequest(f"diffusers: model {spec.name!r} has no model_path")
        self.model_path = spec.model_path
        self._pipeline: Any = None
        self._loading = asyncio.Lock()
        # One generation at a time per pipeline: it holds the whole device.
        self._busy = asyncio.Lock()

    async def _loaded(self) -> Any:
        async with self._loading:
            if self._pipeline is None:
                self._pipeline = await asyncio.to_thread(self._load)
        return self._pipeline

    def _load(self) -> Any:
        import torch
        from diffusers import AutoPipelineForText2Image

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if device == "cuda" else torch.float32
        pipeline = AutoPipelineForText2Image.from_pretrained(self.model_path, dtype=dtype)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline.to(device)

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        pipeline = await self._loaded()
        stop = threading.Event()
        async with self._busy:
            try:
                return await asyncio.to_thread(self._generate, pipeline, request, stop)
            except asyncio.CancelledError:
                stop.set()  # the thread notices at its next step
                raise

    @staticmethod
    def _generate(
        pipeline: Any, request: ImageRequest, stop: threading.Event
    ) -> list[GeneratedImage]:
        def on_step(_pipe: Any, _step: int, _timestep: Any, kwargs: dict[str, Any]) -> Any:
            if stop.is_set():
                raise Interrupted
            return kwargs

        width, height = request.size
        try:
            result = pipeline(
                request.prompt,
                width=width,
                height=height,
                num_images_per_prompt=request.n,
                num_inference_steps=int(request.params.get("steps", DEFAULT_STEPS)),
                callback_on_step_end=on_step,
            )
        except Interrupted:
            return []
        images = []
        for image in result.images:
            out = io.BytesIO()
            image.save(out, format="PNG")
            images.append(GeneratedImage(out.getvalue(), "image/png"))
        return images
