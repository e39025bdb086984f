"""The `diffusers` provider: a real task through the embedded worker, on the CPU, from a tiny
randomly initialised pipeline built in a temp folder (no download)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.support.embedded import EmbeddedFactory, finished
from tests.support.tiny_sd import build_tiny_pipeline, one_torch_thread


async def test_an_image_task_runs_stable_diffusion_in_the_worker(
    embedded: EmbeddedFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # everything comes from the folder
    with one_torch_thread():
        await _runs_in_the_worker(embedded, tmp_path)


async def _runs_in_the_worker(embedded: EmbeddedFactory, tmp_path: Path) -> None:
    model = build_tiny_pipeline(tmp_path / "models")
    table = tmp_path / "models.toml"
    table.write_text(
        f'[models."tiny-sd"]\nkind = "image"\nprovider = "diffusers"\nqueue = "sd-local"\n'
        f'model_path = "{model}"\nsize = "32x32"\n'
    )
    async with embedded(models_file=table) as client:
        listed = {m["id"]: m for m in (await client.get("/v1/models")).json()["data"]}
        assert listed["tiny-sd"]["served_by"] == "diffusers"
        body = {"model": "tiny-sd", "prompt": "a red square", "n": 2, "size": "32x32"}
        response = await client.post("/openai/v1/images/generations", json=body)
        assert response.status_code == 200, response.text
        urls = [item["url"] for item in response.json()["data"]]
        assert len(urls) == 2
        for url in urls:
            png = (await client.get(url)).content
            image = Image.open(io.BytesIO(png))
            assert (image.format, image.size) == ("PNG", (32, 32))

        seed_api = await client.post(
            "/v1/images/generations",
            json={"model": "tiny-sd", "prompt": "a blue circle"},
            headers={"Prefer": "wait=60"},
        )
        task = await finished(client, seed_api.json()["task_id"], within=60)
        assert task["status"] == "SUCCESS" and task["provider"] == "diffusers"
