"""The file storage seam: bytes by key, wherever the deployment keeps them.

The database keeps each file's metadata (content type, size, task) and its key; a backend keeps
the bytes. Three backends sit beside this module: a local folder (`local.py`), chunks in the
database (`database.py`, the `postgres` store) and any S3-compatible object store (`s3.py`).
Reads are streams, so a large file is never held whole by a gateway.

What a caller can count on, on every backend (`tests/contract/test_file_stores.py`):
- `put` has written every byte when it returns, or raised; a reader never sees half a file.
- `open` raises `FileNotFoundError` before it yields anything when the key holds nothing, so a
  route can still answer 404; `FileStoreUnavailable` (or `DatabaseUnavailable`) when the store
  cannot be reached.
- `delete` of keys that hold nothing is no error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence

# How much of a file one read hands on (and the `postgres` store keeps in one row).
CHUNK_BYTES = 256 * 1024


def file_key(file_id: str) -> str:
    """Where a file's bytes are kept, from its id alone: so a link can be made (pre-signed) from
    the id a task's result carries, without reading its row. Two characters of the id make a
    folder, so a local folder holds a few hundred subfolders rather than every file."""
    return f"{file_id[:2]}/{file_id}"


class FileStorage(ABC):
    """Bytes by key. Implementations translate their client's errors into
    `FileStoreUnavailable`, and a missing key into `FileNotFoundError`."""

    # The name `AITASKS_FILE_STORE` gives it (`local`, `postgres`, `s3`), for logs and errors.
    name: str = ""

    @abstractmethod
    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store `data` under `key` (replacing what was there), wholly or not at all."""

    @abstractmethod
    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The bytes under `key`, as a stream of pieces. Raises `FileNotFoundError` at once (not
        while streaming) when there are none."""

    async def get(self, key: str) -> bytes:
        """The bytes under `key`, whole: for callers that need them in memory (base64 answers)."""
        return b"".join([piece async for piece in await self.open(key)])

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Forget the bytes under each key, if there are any."""

    async def check(self) -> None:  # noqa: B027  (most stores have nothing to check)
        """Make sure the store can be used, at start-up; raise `ConfigError` naming
        `AITASKS_FILE_STORE` when it cannot (an unreachable bucket)."""

    def link(self, key: str, ttl_seconds: int) -> str | None:
        """A URL the store itself serves the file at for `ttl_seconds` (a pre-signed URL), or
        None when it cannot make one (a folder, the database)."""
        return None

    async def close(self) -> None:  # noqa: B027  (most stores hold nothing of their own)
        """Let go of connections the store holds."""
