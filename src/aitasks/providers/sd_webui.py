"""A self-hosted Stable Diffusion server with the AUTOMATIC1111 / Forge API (/sdapi/v1/txt2img)."""

from __future__ import annotations

import base64

from aitasks.errors import ProviderBadRequest
from aitasks.providers import http
from aitasks.providers.base import GeneratedImage, ImageRequest, Provider
from aitasks.routing import ModelSpec

DEFAULT_STEPS = 25


class SDWebUIProvider(Provider):
    name = "sd-webui"

    def __init__(self, spec: ModelSpec, *, api_key: str | None, base_url: str | None) -> None:
        if not base_url:
            raise ProviderBadRequest(f"sd-webui: model {spec.name!r} has no base URL")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.client = http.client(base_url.rstrip("/"), spec.timeout_s, headers=headers)

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        width, height = request.size
        body: dict[str, object] = {
            "prompt": request.prompt,
            "width": width,
            "height": height,
            "batch_size": request.n,
            "steps": DEFAULT_STEPS,
        }
        if request.model.upstream_model:
            body["override_settings"] = {"sd_model_checkpoint": request.model.upstream_model}
        with http.translated_errors(self.name):
            response = await self.client.post("/sdapi/v1/txt2img", json=body)
            await http.raise_for_status(self.name, response)
        encoded = response.json().get("images") or []
        if not encoded:
            raise ProviderBadRequest("sd-webui: the server returned no image")
        # The server may add extra images (grids, control maps) after the ones asked for.
        return [GeneratedImage(base64.b64decode(b), "image/png") for b in encoded[: request.n]]

    async def close(self) -> None:
        await self.client.aclose()
