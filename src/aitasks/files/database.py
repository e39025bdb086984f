"""The `postgres` file store: files' bytes in the database itself, a piece a row.

The default whenever the database is PostgreSQL, so a deployment of many machines serves every
file from every gateway with nothing more than it already runs. A file is written in one
transaction (readers see it whole or not at all) and read a piece at a time, each piece its own
short read, so serving a large file neither loads it whole nor holds a connection meanwhile. A
database outage surfaces as `DatabaseUnavailable`, as it does everywhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aitasks.files.base import CHUNK_BYTES, FileStorage
from aitasks.store import file_bytes
from aitasks.store.database import Database


class DatabaseFileStorage(FileStorage):
    name = "postgres"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        view = memoryview(data)
        pieces = [bytes(view[at : at + CHUNK_BYTES]) for at in range(0, len(view), CHUNK_BYTES)]
        async with self.db.session() as session:
            await file_bytes.write(session, key, pieces)

    async def _piece(self, key: str, seq: int) -> bytes | None:
        async with self.db.read_connection() as connection:
            return await file_bytes.read(connection, key, seq)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        first = await self._piece(key, 0)
        if first is None:
            raise FileNotFoundError(key)
        return self._pieces(key, first)

    async def _pieces(self, key: str, first: bytes) -> AsyncIterator[bytes]:
        piece: bytes | None = first
        seq = 0
        while piece:
            yield piece
            seq += 1
            piece = await self._piece(key, seq)

    async def delete(self, keys: Sequence[str]) -> None:
        async with self.db.session() as session:
            await file_bytes.remove(session, keys)
