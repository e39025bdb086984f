"""Files in a folder: the embedded default. Every gateway and worker must see the same folder, so
on several machines it needs shared storage; there `postgres` or `s3://` fit better."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

import anyio

from aitasks.errors import FileStoreUnavailable
from aitasks.files.base import CHUNK_BYTES, FileStorage

T = TypeVar("T")


class LocalFileStorage(FileStorage):
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise FileNotFoundError(key)
        return path

    async def _in_thread(self, action: Callable[[], T]) -> T:
        """Run blocking file work off the loop; a failure other than a missing file (a full
        disk, a folder gone read-only) is the store's outage."""
        try:
            return await anyio.to_thread.run_sync(action)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise FileStoreUnavailable(f"the file folder {self.root} failed: {exc}") from exc

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self._path(key)
        await self._in_thread(lambda: self._write(path, data))

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # Write then rename, so a reader never sees half a file.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        handle = await self._in_thread(lambda: path.open("rb"))
        return self._pieces(handle)

    async def _pieces(self, handle: BinaryIO) -> AsyncIterator[bytes]:
        try:
            while piece := await self._in_thread(lambda: handle.read(CHUNK_BYTES)):
                yield piece
        finally:
            handle.close()

    async def delete(self, keys: Sequence[str]) -> None:
        paths = [self._path(key) for key in keys]

        def unlink() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        await self._in_thread(unlink)
