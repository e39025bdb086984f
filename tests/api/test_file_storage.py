"""Generated files through the API on each store: served (streamed) by the gateway, a 404 when
their bytes are missing, pre-signed links of the store with `AITASKS_FILE_LINKS=store`, and gone
from their store when their conversation is deleted."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from aitasks.config import Settings
from aitasks.files import file_key, open_file_storage
from aitasks.store.database import Database
from tests.support.embedded import EmbeddedFactory, finished, make_settings

STORES = ("local", "postgres", "s3")


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings that choose this store (on PostgreSQL for the database's own)."""
    if request.param == "postgres":
        return {"database_url": request.getfixturevalue("postgres_url")}
    if request.param == "s3":
        return {"file_store": f"s3://{request.getfixturevalue('s3_env')['bucket']}/images"}
    return {"file_store": "local"}


async def make_image(client: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    """An image turn, finished: (the task, its image's link)."""
    submitted = await client.post(
        "/v1/images/generations",
        json={"prompt": "a lighthouse", "model": "mock-image", "conversation_id": None},
    )
    task = await finished(client, submitted.json()["task_id"])
    assert task["status"] == "SUCCESS", task
    [url] = task["result"]
    return task, url


async def remove_bytes(settings: Settings, file_id: str) -> None:
    """Take the file's bytes out of its store behind the service's back."""
    db = Database(settings.sqlalchemy_url)
    storage = open_file_storage(settings, db)
    try:
        await storage.delete([file_key(file_id)])
    finally:
        await storage.close()
        await db.dispose()


async def test_an_image_is_streamed_and_a_missing_one_is_a_404(
    embedded: EmbeddedFactory, store: dict[str, Any], tmp_path: Any
) -> None:
    async with embedded(**store) as client:
        _, url = await make_image(client)
        served = await client.get(url)
        assert served.status_code == 200, served.text
        assert served.headers["content-type"] == "image/png"
        assert int(served.headers["content-length"]) == len(served.content)
        assert Image.open(io.BytesIO(served.content)).format == "PNG"

        file_id = url.rsplit("/", 1)[1]
        await remove_bytes(make_settings(tmp_path, **store), file_id)
        missing = await client.get(url)
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found"


async def test_store_links_are_pre_signed_urls_the_store_serves(
    embedded: EmbeddedFactory, s3_env: dict[str, str]
) -> None:
    store = f"s3://{s3_env['bucket']}/images"
    async with embedded(file_store=store, file_links="store") as client:
        task, url = await make_image(client)
        assert url.startswith(s3_env["AWS_ENDPOINT_URL"]) and "X-Amz-Signature=" in url
        async with httpx.AsyncClient() as outside:
            from_store = await outside.get(url)
        assert from_store.status_code == 200
        assert from_store.headers["content-type"] == "image/png"
        # The gateway still serves the same bytes at its own address.
        file_id = url.split("?")[0].rsplit("/", 1)[1]
        assert (await client.get(f"/v1/files/{file_id}")).content == from_store.content
        history = await client.get(f"/v1/conversations/{task['conversation_id']}/history")
        assert history.json()["messages"][1]["images"][0].startswith(s3_env["AWS_ENDPOINT_URL"])


async def test_deleting_a_conversation_removes_its_files_from_the_store(
    embedded: EmbeddedFactory, store: dict[str, Any], tmp_path: Any
) -> None:
    settings = make_settings(tmp_path, **store)
    async with embedded(**store) as client:
        task, url = await make_image(client)
        file_id = url.rsplit("/", 1)[1]
        deleted = await client.delete(f"/v1/conversations/{task['conversation_id']}")
        assert deleted.status_code == 200
        assert (await client.get(url)).status_code == 404

    db = Database(settings.sqlalchemy_url)
    storage = open_file_storage(settings, db)
    try:
        with pytest.raises(FileNotFoundError):
            await storage.open(file_key(file_id))
    finally:
        await storage.close()
        await db.dispose()
