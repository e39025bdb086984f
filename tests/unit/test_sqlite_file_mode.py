"""The embedded SQLite file holds webhook and link secrets: its folder is made 0700 and the file
(with its WAL and shared-memory files) 0600, whatever the process's umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from aitasks.store.database import Database
from aitasks.store.migrate import upgrade


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask most shells have: files world-readable unless made otherwise."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
async def test_the_data_dir_and_database_file_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "nested"
    db = Database(f"sqlite+aiosqlite:///{folder / 'aitasks.db'}")
    try:
        await upgrade(db)
        assert mode(folder) == 0o700
        made = sorted(p.name for p in folder.iterdir())
        assert "aitasks.db" in made
        for name in made:  # aitasks.db, and -wal / -shm while a connection is open
            assert mode(folder / name) == 0o600, name
    finally:
        await db.dispose()
    assert mode(folder / "aitasks.db") == 0o600
    # The umask is the process's own again afterwards.
    assert os.umask(0o022) == 0o022


@pytest.mark.usefixtures("open_umask")
async def test_an_existing_folder_is_left_as_it_is(tmp_path: Path) -> None:
    """A folder the operator made (and chose the mode of) keeps its mode; the file is private."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o750)
    db = Database(f"sqlite+aiosqlite:///{folder / 'aitasks.db'}")
    try:
        await upgrade(db)
    finally:
        await db.dispose()
    assert mode(folder) == 0o750
    assert mode(folder / "aitasks.db") == 0o600
