"""Retention: what is older than the operator keeps goes, a small batch at a time.

- `AITASKS_FILE_RETENTION_DAYS` (off): generated files made that long ago, bytes then rows.
- `AITASKS_TASK_RETENTION_DAYS` (30): tasks finished that long ago, with their webhook deliveries
  and idempotency keys; their messages stay in the conversation's history.
- `AITASKS_WEBHOOK_RETENTION_DAYS` (7): webhook deliveries delivered or given up that long ago.
- `AITASKS_CONVERSATION_RETENTION_DAYS` (off): conversations idle that long, with all in them.

A task is kept while its files are (they are reached through it). Event logs need no purge:
they expire by themselves an hour after their task ends. The reconciler runs `purge` in every
worker, one worker at a time (its lock), within a time budget per pass; `aitasks purge` runs it
to the end, or says what it would remove (`--dry-run`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from aitasks.config import Settings
from aitasks.errors import ServiceUnavailable
from aitasks.files import FileStorage, open_file_storage
from aitasks.services import Services
from aitasks.store import purge as store
from aitasks.store.database import Database
from aitasks.store.models import utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")

# Rows one transaction removes: small enough that no statement holds its locks for long.
BATCH = 500


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """What is older than these goes; None keeps that kind of data until it is deleted."""

    tasks: datetime | None
    files: datetime | None
    deliveries: datetime | None
    conversations: datetime | None

    @classmethod
    def of(cls, settings: Settings, now: datetime | None = None) -> Cutoffs:
        now = now or utcnow()

        def before(days: int | None) -> datetime | None:
            return None if days is None else now - timedelta(days=days)

        return cls(
            tasks=before(settings.task_retention_days),
            files=before(settings.file_retention_days),
            deliveries=before(settings.webhook_retention_days),
            conversations=before(settings.conversation_retention_days),
        )


@dataclass(slots=True)
class Purged:
    """What one purge removed, and how its statements went."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("files", "tasks", "webhook_deliveries", "conversations"), 0
        )
    )
    batches: int = 0
    # The longest one transaction took (one batch's statements), in seconds.
    longest_seconds: float = 0.0
    # False when the time budget ran out with more left to remove.
    finished: bool = True

    def summary(self) -> str:
        removed = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in self.counts.items())
        return (
            f"removed {removed} in {self.batches} batches "
            f"(longest {self.longest_seconds * 1000:.0f} ms)"
        )


class _Purge:
    """One run of the purge: its cutoffs, its budget, what it removed so far."""

    def __init__(
        self, db: Database, storage: FileStorage, cutoffs: Cutoffs, batch: int, deadline: float
    ) -> None:
        self.db, self.storage, self.cutoffs = db, storage, cutoffs
        self.batch, self.deadline = batch, deadline
        self.purged = Purged()

    async def timed(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run one transaction, counting how long it took."""
        started = time.monotonic()
        try:
            return await step()
        finally:
            self.purged.longest_seconds = max(
                self.purged.longest_seconds, time.monotonic() - started
            )

    def out_of_time(self) -> bool:
        """Whether the budget is spent (never before the first batch: each run does some)."""
        if self.purged.batches == 0 or time.monotonic() < self.deadline:
            return False
        self.purged.finished = False
        return True

    async def batches(self, kind: str, one: Callable[[], Awaitable[int]]) -> None:
        """Remove batches of one kind until fewer than a batch are left, or time is up."""
        while not self.out_of_time():
            removed = await one()
            self.purged.counts[kind] += removed
            self.purged.batches += 1
            if removed < self.batch:
                return
            await asyncio.sleep(0)  # let the process's other work in between batches

    async def files(self, before: datetime) -> int:
        """Bytes first, then rows: a failing store leaves rows (purged next time), never a row
        naming bytes that are gone for a reason other than its age."""
        db = self.db

        async def find() -> list[tuple[str, str]]:
            async with db.session() as session:
                return await store.expired_files(session, before, self.batch)

        found = await self.timed(find)
        if found:
            try:
                await self.storage.delete([key for _, key in found])
            except ServiceUnavailable as exc:
                # Their rows stay, and so do their tasks; the next purge tries again.
                log.warning("purge: the file store failed; files kept for now: %s", exc)
                self.purged.finished = False
                return 0

            async def remove() -> int:
                async with db.session() as session:
                    return await store.delete_files(session, [file_id for file_id, _ in found])

            await self.timed(remove)
        return len(found)

    async def tasks(self, before: datetime) -> int:
        db = self.db

        async def find() -> list[str]:
            async with db.session() as session:
                return await store.expired_tasks(session, before, self.batch)

        ids = await self.timed(find)
        if ids:

            async def remove() -> int:
                async with db.session() as session:
                    return await store.delete_tasks(session, ids, before)

            await self.timed(remove)
        return len(ids)

    async def deliveries(self, before: datetime) -> int:
        async def remove() -> int:
            async with self.db.session() as session:
                return await store.delete_deliveries(session, before, self.batch)

        return await self.timed(remove)

    async def conversations(self, before: datetime) -> int:
        async def remove() -> tuple[int, list[str]]:
            async with self.db.session() as session:
                return await store.delete_conversations(session, before, self.batch)

        removed, keys = await self.timed(remove)
        try:
            await self.storage.delete(keys)
        except ServiceUnavailable as exc:
            log.warning("purge: files of removed conversations left in the store: %s", exc)
        return removed

    async def run(self) -> Purged:
        cut = self.cutoffs
        # Files before tasks: a task stays while it has files.
        if (files := cut.files) is not None:
            await self.batches("files", lambda: self.files(files))
        if (tasks := cut.tasks) is not None:
            await self.batches("tasks", lambda: self.tasks(tasks))
        if (deliveries := cut.deliveries) is not None:
            await self.batches("webhook_deliveries", lambda: self.deliveries(deliveries))
        if (idle := cut.conversations) is not None:
            await self.batches("conversations", lambda: self.conversations(idle))
        return self.purged


async def purge(
    services: Services,
    *,
    budget_seconds: float | None = None,
    batch: int = BATCH,
    now: datetime | None = None,
) -> Purged:
    """Remove what is past its retention, in batches of `batch` rows, for at most
    `budget_seconds` (then `finished` is False, and the next run goes on from there)."""
    deadline = time.monotonic() + (budget_seconds if budget_seconds is not None else 1e9)
    cutoffs = Cutoffs.of(services.settings, now)
    purged = await _Purge(services.db, services.storage, cutoffs, batch, deadline).run()
    if any(purged.counts.values()):
        log.info("purge: %s", purged.summary())
    return purged


async def would_purge(
    settings: Settings, db: Database, now: datetime | None = None
) -> dict[str, int]:
    """What `purge` would remove now, by kind (tasks whose files stay are not counted)."""
    cut = Cutoffs.of(settings, now)
    async with db.session() as session:
        return await store.count_expired(
            session,
            tasks=cut.tasks,
            files=cut.files,
            deliveries=cut.deliveries,
            conversations=cut.conversations,
        )


async def purge_now(settings: Settings, db: Database, *, dry_run: bool = False) -> str:
    """`aitasks purge`: remove everything past its retention now, or (`dry_run`) say what that
    would be; returns the line to print."""
    if dry_run:
        counts = await would_purge(settings, db)
        listed = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items())
        return f"would remove {listed}"
    storage = open_file_storage(settings, db)
    try:
        await storage.check()
        deadline = time.monotonic() + 1e9
        purged = await _Purge(db, storage, Cutoffs.of(settings), BATCH, deadline).run()
    finally:
        await storage.close()
    return purged.summary()
