"""The long-lived parts one process holds: database, queue, model table, file storage, event
log and the per-key limits."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from aitasks.config import Settings
from aitasks.errors import ConfigError, RedisUnavailable
from aitasks.events import EventLog, open_event_log
from aitasks.files import FileStorage, file_key, open_file_storage
from aitasks.limits import Limits, open_limits
from aitasks.links import FileSigner
from aitasks.providers import IMPLEMENTED
from aitasks.queue import TaskQueue, open_queue
from aitasks.routing import ModelTable
from aitasks.store import api_keys as store_keys
from aitasks.store.database import Database

log = logging.getLogger(__name__)


def load_models(settings: Settings) -> ModelTable:
    """The model table, checked: fallbacks must exist, and in strict mode no model may fall back
    to the mock for want of a key."""
    table = ModelTable.load(settings.models_file, implemented=IMPLEMENTED)
    table.check_fallbacks()
    if settings.strict_models and table.mock_fallbacks():
        missing = ", ".join(f"{m.name} (needs {table.needs(m)})" for m in table.mock_fallbacks())
        raise ConfigError(f"AITASKS_STRICT_MODELS is on and these models cannot run: {missing}")
    return table


def _store_links(settings: Settings, storage: FileStorage) -> Callable[[str], str] | None:
    """With `AITASKS_FILE_LINKS=store`, file links are the store's pre-signed URLs: the store
    serves the bytes, not a gateway. Only a store that can sign URLs (S3) can do that."""
    if settings.file_links != "store":
        return None
    ttl = settings.file_url_ttl_seconds
    if storage.link(file_key("0" * 32), ttl) is None:
        raise ConfigError(
            f"AITASKS_FILE_LINKS=store needs a store that signs URLs (s3://...), "
            f"not AITASKS_FILE_STORE={storage.name}"
        )

    def link(file_id: str) -> str:
        url = storage.link(file_key(file_id), ttl)
        assert url is not None  # the store signed one above
        return url

    return link


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    queue: TaskQueue
    models: ModelTable
    storage: FileStorage
    events: EventLog
    limits: Limits
    # Signs file links; read from the database by `load_secrets`, shared by every process.
    file_signer: FileSigner | None = None
    # A file id -> the store's own (pre-signed) URL for it, with `AITASKS_FILE_LINKS=store`.
    store_links: Callable[[str], str] | None = None

    @classmethod
    def open(cls, settings: Settings, *, in_process_queue: bool = False) -> Services:
        db = Database(settings.sqlalchemy_url, pool_size=settings.db_pool_size)
        storage = open_file_storage(settings, db)
        return cls(
            settings=settings,
            db=db,
            queue=open_queue(settings, in_process=in_process_queue),
            models=load_models(settings),
            storage=storage,
            events=open_event_log(settings, in_process=in_process_queue),
            limits=open_limits(settings, in_process=in_process_queue),
            store_links=_store_links(settings, storage),
        )

    async def load_secrets(self) -> None:
        """Read the secrets every process must share (made by whichever asks first)."""
        async with self.db.session() as session:
            secret = await store_keys.service_secret(
                session, "file_links", make=secrets.token_urlsafe(32)
            )
        self.file_signer = FileSigner(secret.encode(), self.settings.file_url_ttl_seconds)

    async def warm(self) -> None:
        """Connect the queue, the event log and the limits to Redis (every node of a cluster)
        and load their scripts before serving (see `redis_connect.warm`). A Redis not reachable
        yet is no reason not to start: calls answer 503 or wait until it is back, as they would
        had it gone later."""
        try:
            await asyncio.gather(self.queue.warm(), self.events.warm(), self.limits.warm())
        except RedisUnavailable as exc:
            log.warning("Redis not reachable at start-up (%s): connecting at first use", exc)

    async def close(self) -> None:
        await self.storage.close()
        await self.queue.close()
        await self.events.close()
        await self.limits.close()
        await self.db.dispose()
