"""Images in: uploads (POST /v1/files: size and type checked, the tenant's own), images sent as
data: URLs or as this service's files through the SDK and the seed API, the mock naming each one's
size, the images in history, remote URLs never fetched, and bad images refused writing nothing."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from aitasks.config import Settings
from tests.support.embedded import EmbeddedFactory, finished
from tests.support.fake_providers import openai_server
from tests.support.keyed_app import keyed_app
from tests.support.sdk import async_openai
from tests.support.services import row_counts


def picture(width: int, height: int, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 20)).save(out, format=kind)
    return out.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


async def upload(client: httpx.AsyncClient, data: bytes, name: str = "a.png") -> httpx.Response:
    return await client.post("/v1/files", files={"file": (name, data, "image/png")})


async def test_an_upload_is_checked_stored_and_served(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, picture(40, 30, "JPEG"), "photo.jpg")
    assert uploaded.status_code == 201, uploaded.text
    made = uploaded.json()
    assert made["object"] == "file" and made["filename"] == "photo.jpg"
    # What the bytes are decides, not what the upload claimed.
    assert (made["content_type"], made["width"], made["height"]) == ("image/jpeg", 40, 30)
    served = await client.get(f"/v1/files/{made['id']}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(served.content)).size == (40, 30)


async def test_the_seed_api_sends_uploaded_and_inline_images(client: httpx.AsyncClient) -> None:
    file_id = (await upload(client, picture(64, 48))).json()["id"]
    accepted = await client.post("/v1/chat/completions", json={
        "prompt": "what are these?", "model": "mock-chat",
        "images": [file_id, data_url(picture(20, 10))]})  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    task = await finished(client, accepted.json()["task_id"])
    assert "Image 1 is 64x48. Image 2 is 20x10." in task["result"]
    conversation = accepted.json()["conversation_id"]
    history = (await client.get(f"/v1/conversations/{conversation}/history")).json()["messages"]
    first, second = history[0]["images"]
    assert first.endswith(f"/v1/files/{file_id}")
    inline = await client.get(second)  # the inline image became a file of the conversation
    assert Image.open(io.BytesIO(inline.content)).size == (20, 10)
    # A later turn still sees them (from file storage), as context.
    again = await client.post(
        "/v1/chat/completions",
        json={"prompt": "and now?", "model": "mock-chat", "conversation_id": conversation},
    )
    later = await finished(client, again.json()["task_id"])  # fmt: skip
    assert "1 earlier turn " in later["result"] and "Image 2 is 20x10." in later["result"]
    # The inline image goes with its conversation; an upload stays its tenant's.
    assert (await client.delete(f"/v1/conversations/{conversation}")).status_code == 200
    assert (await client.get(second)).status_code == 404
    assert (await client.get(f"/v1/files/{file_id}")).status_code == 200


async def test_image_parts_through_the_sdk(client: httpx.AsyncClient) -> None:
    sdk = async_openai(client)
    file_id = (await upload(client, picture(33, 22))).json()["id"]
    content: Any = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": data_url(picture(12, 34))}},
        {"type": "image_url", "image_url": {"url": f"http://testserver/v1/files/{file_id}"}},
    ]
    reply = await sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": content}]
    )
    text = reply.choices[0].message.content or ""
    assert text.startswith('Mock reply to "Describe"')
    assert "Image 1 is 12x34. Image 2 is 33x22." in text


async def test_remote_urls_only_reach_providers_that_fetch_them(
    embedded: EmbeddedFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = "http://127.0.0.1:9/never-fetched.png"  # nothing listens there
    message = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]
    monkeypatch.setenv("FAKE_OPENAI_KEY", "k")
    with openai_server() as server:
        table = tmp_path / "models.toml"
        table.write_text(
            f'[models."fake-gpt"]\nkind = "chat"\nprovider = "openai"\nqueue = "fake"\n'
            f'base_url = "{server.url}/v1"\napi_key_env = "FAKE_OPENAI_KEY"\n'
        )
        async with embedded(models_file=table) as client:
            refused = await client.post(
                "/openai/v1/chat/completions", json={"model": "mock-chat", "messages": message}
            )
            passed = await client.post("/openai/v1/chat/completions",
                                       json={"model": "fake-gpt", "messages": message})  # fmt: skip
    assert refused.status_code == 400
    assert "model 'mock-chat' is served by 'mock', which is not sent image URLs" in refused.text
    assert passed.status_code == 200, passed.text
    sent = server.requests[0]["body"]["messages"][0]["content"]
    assert sent[1] == {"type": "image_url", "image_url": {"url": url}}  # as given, not fetched


@pytest.fixture
def small_images(tmp_path: Path) -> Settings:
    from tests.support.embedded import make_settings

    return make_settings(tmp_path, max_image_bytes=2000, max_input_images=2)


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda: {"images": [data_url(b"not an image at all")]}, 415, "is not an image"),
        (lambda: {"images": [data_url(picture(300, 300, "BMP"), "image/bmp")]}, 413,
         "AITASKS_MAX_IMAGE_BYTES"),
        (lambda: {"images": [data_url(picture(2, 2, "BMP"), "image/bmp")]}, 415, "is not an image"),
        (lambda: {"images": ["data:image/png;base64,@@@"]}, 400, "not valid base64"),
        (lambda: {"images": ["ftp://example.com/a.png"]}, 400, "an image is a data: URL"),
        (lambda: {"images": ["0" * 32]}, 400, "no image file"),
        (lambda: {"images": [data_url(picture(2, 2))] * 3}, 422, "AITASKS_MAX_INPUT_IMAGES"),
        (lambda: {"images": [data_url(picture(2, 2))], "model": "deepseek-chat"}, 400,
         "model 'deepseek-chat' does not support images (vision)"),
    ],
)  # fmt: skip
async def test_bad_images_are_refused_and_write_nothing(
    embedded: EmbeddedFactory, small_images: Settings, make: Any, status: int, words: str
) -> None:
    async with embedded(max_image_bytes=2000, max_input_images=2) as client:
        before = row_counts(small_images.sqlalchemy_url)
        body = {"prompt": "look", "model": "mock-chat", **make()}
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"]
        assert row_counts(small_images.sqlalchemy_url) == before
        files = list((small_images.data_dir / "files").rglob("*"))
        assert not [f for f in files if f.is_file()]  # no bytes stored either


async def test_bad_uploads_are_refused(embedded: EmbeddedFactory, small_images: Settings) -> None:
    async with embedded(max_image_bytes=2000) as client:
        large = await upload(client, picture(300, 300, "BMP"))
        assert large.status_code == 413 and "AITASKS_MAX_IMAGE_BYTES" in large.text
        huge = await upload(client, b"x" * 100_000)  # past the body limit for uploads
        assert huge.status_code == 413 and "AITASKS_MAX_IMAGE_BYTES" in huge.text
        text = await upload(client, b"hello, I am text", "a.png")
        assert text.status_code == 415
        assert row_counts(small_images.sqlalchemy_url)["files"] == 0


async def test_an_upload_is_its_tenants_own(tmp_path: Path) -> None:
    async with keyed_app("embedded", tmp_path) as app:
        mine, theirs = await app.key("alice"), await app.key("bob")
        made = await app.http.post(
            "/v1/files", files={"file": ("a.png", picture(5, 5), "image/png")}, headers=mine
        )
        file_id = made.json()["id"]
        assert (await app.http.get(f"/v1/files/{file_id}", headers=mine)).status_code == 200
        assert (await app.http.get(f"/v1/files/{file_id}", headers=theirs)).status_code == 404
        refused = await app.http.post("/v1/chat/completions", headers=theirs, json={
            "prompt": "steal", "model": "mock-chat", "images": [file_id]})  # fmt: skip
        assert refused.status_code == 400 and "no image file" in refused.text
        anonymous = await app.http.post("/v1/files", files={"file": ("a.png", b"x")})
        assert anonymous.status_code == 401
