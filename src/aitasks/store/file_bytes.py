"""Files' bytes in the database, a piece a row (`file_chunks`): the queries of the `postgres` file
store (`files/database.py`). Core statements, one short transaction each, so no read or write
holds a connection for longer than one piece takes."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from aitasks.store.models import FileChunk, table_of

CHUNKS = table_of(FileChunk)


async def write(session: AsyncSession, key: str, pieces: Sequence[bytes]) -> None:
    """Put a file's pieces under `key` in one transaction, replacing any there: readers see the
    old file or the new one, never a mix. At least one piece is written (an empty one for an
    empty file), so that piece 0 says the file exists."""
    rows = [{"key": key, "seq": n, "data": piece} for n, piece in enumerate(pieces or [b""])]
    async with session.begin():
        await session.execute(delete(CHUNKS).where(CHUNKS.c.key == key))
        await session.execute(insert(CHUNKS), rows)


async def read(connection: AsyncConnection, key: str, seq: int) -> bytes | None:
    """Piece `seq` of the file under `key`; None past its end (or when there is no such file)."""
    statement = select(CHUNKS.c.data).where(CHUNKS.c.key == key, CHUNKS.c.seq == seq)
    data = (await connection.execute(statement)).scalar_one_or_none()
    return None if data is None else bytes(data)


async def remove(session: AsyncSession, keys: Sequence[str]) -> None:
    """Delete every piece of the files under `keys`."""
    if keys:
        async with session.begin():
            await session.execute(delete(CHUNKS).where(CHUNKS.c.key.in_(list(keys))))
