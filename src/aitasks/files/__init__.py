"""Where files' bytes live: the seam (`base.py`) and its backends, chosen by `AITASKS_FILE_STORE`.

- `local`: a folder, `AITASKS_DATA_DIR/files`. One machine (the embedded default), or a folder
  every machine shares.
- `postgres`: the database itself (`file_chunks`). Several machines with nothing more to run; the
  default on PostgreSQL.
- `s3://bucket/prefix`: an S3-compatible object store. Many or large files; links the store serves
  itself.

A backend is imported only when it is chosen, so the S3 client stays optional.
"""

from __future__ import annotations

from aitasks.config import Settings
from aitasks.errors import ConfigError
from aitasks.files.base import FileStorage, file_key
from aitasks.files.local import LocalFileStorage
from aitasks.store.database import Database

__all__ = [
    "FileStorage",
    "LocalFileStorage",
    "check_file_store",
    "file_key",
    "open_file_storage",
    "store_name",
]


def store_name(settings: Settings, db: Database) -> str:
    """The store `AITASKS_FILE_STORE` names, else the default for this database."""
    if settings.file_store:
        return settings.file_store.strip()
    return "local" if db.is_sqlite else "postgres"


def open_file_storage(settings: Settings, db: Database) -> FileStorage:
    """The store the settings choose; `ConfigError` (naming the setting) for one that is not."""
    name = store_name(settings, db)
    if name == "local":
        return LocalFileStorage(settings.files_dir)
    if name == "postgres":
        from aitasks.files.database import DatabaseFileStorage

        return DatabaseFileStorage(db)
    if name.startswith("s3://"):
        try:
            import obstore  # noqa: F401  (an optional dependency: the `s3` extra)
        except ImportError as exc:
            raise ConfigError(
                f"AITASKS_FILE_STORE={name}: the S3 client is not installed: "
                "pip install 'aitasks[s3]'"
            ) from exc
        from aitasks.files.s3 import S3FileStorage

        return S3FileStorage(name)
    raise ConfigError(
        f"AITASKS_FILE_STORE={name!r} is not a file store: use local, postgres or s3://bucket/prefix"
    )


async def check_file_store(settings: Settings, db: Database) -> str:
    """Open the chosen store and make sure it can be used, as a service's start-up does;
    `ConfigError` (naming the setting) when it cannot. Returns the store's name."""
    storage = open_file_storage(settings, db)
    try:
        await storage.check()
        if settings.file_links == "store" and storage.link(file_key("0" * 32), 60) is None:
            raise ConfigError(
                "AITASKS_FILE_LINKS=store needs a store that signs URLs (s3://...), "
                f"not AITASKS_FILE_STORE={storage.name}"
            )
    finally:
        await storage.close()
    return store_name(settings, db)
