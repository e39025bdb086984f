"""The file storage contract (`files/base.py`) on every store: a local folder, the database
(`postgres`, on PostgreSQL and on SQLite) and an S3-compatible server (moto, through obstore)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitasks.config import Settings, async_database_url
from aitasks.errors import ConfigError
from aitasks.files import FileStorage, check_file_store, file_key, open_file_storage
from aitasks.files.base import CHUNK_BYTES
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade
from aitasks.store.models import new_id

STORES = ("local", "postgres", "postgres-on-sqlite", "s3")


@pytest.fixture(params=STORES)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStorage]:
    if request.param == "postgres":
        url = async_database_url(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    store = "local"
    if request.param.startswith("postgres"):
        store = "postgres"
    elif request.param == "s3":
        store = f"s3://{request.getfixturevalue('s3_env')['bucket']}/some/prefix"
    settings = Settings(_env_file=None, data_dir=tmp_path, file_store=store)  # type: ignore[call-arg]
    db = Database(url)
    await upgrade(db)
    opened = open_file_storage(settings, db)
    assert opened.name == request.param.split("-")[0]
    await opened.check()
    yield opened
    await opened.close()
    await db.dispose()


async def pieces_of(storage: FileStorage, key: str) -> list[bytes]:
    return [piece async for piece in await storage.open(key)]


async def test_bytes_come_back_as_they_went_in_a_piece_at_a_time(storage: FileStorage) -> None:
    data = os.urandom(3 * CHUNK_BYTES + 17)
    key = file_key(new_id())
    await storage.put(key, data, content_type="image/png")

    pieces = await pieces_of(storage, key)
    assert b"".join(pieces) == data
    assert len(pieces) > 1, "a large file is streamed, not handed over whole"
    assert await storage.get(key) == data


async def test_an_empty_file_is_a_file(storage: FileStorage) -> None:
    key = file_key(new_id())
    await storage.put(key, b"", content_type="text/plain")
    assert await storage.get(key) == b""


async def test_a_missing_file_is_refused_before_any_byte(storage: FileStorage) -> None:
    with pytest.raises(FileNotFoundError):
        await storage.open(file_key(new_id()))


async def test_a_put_replaces_what_was_there(storage: FileStorage) -> None:
    key = file_key(new_id())
    await storage.put(key, os.urandom(2 * CHUNK_BYTES), content_type="image/png")
    await storage.put(key, b"smaller", content_type="image/png")
    assert await storage.get(key) == b"smaller"


async def test_delete_forgets_and_minds_no_missing_key(storage: FileStorage) -> None:
    kept, gone = file_key(new_id()), file_key(new_id())
    await storage.put(kept, b"kept", content_type="text/plain")
    await storage.put(gone, b"gone", content_type="text/plain")

    await storage.delete([gone, file_key(new_id())])
    await storage.delete([])

    with pytest.raises(FileNotFoundError):
        await storage.open(gone)
    assert await storage.get(kept) == b"kept"


async def test_only_the_object_store_makes_links_of_its_own(storage: FileStorage) -> None:
    key = file_key(new_id())
    link = storage.link(key, 60)
    if storage.name == "s3":
        assert link is not None and key in link and "X-Amz-Signature=" in link
    else:
        assert link is None


async def test_a_bucket_that_does_not_exist_is_a_config_error_naming_the_setting(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    url = "s3://no-such-bucket-here/files"
    settings = Settings(_env_file=None, data_dir=tmp_path, file_store=url)  # type: ignore[call-arg]
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(ConfigError, match="AITASKS_FILE_STORE=s3://no-such-bucket-here/files"):
            await check_file_store(settings, db)
    finally:
        await db.dispose()
