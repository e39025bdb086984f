"""The operations page's time-series: the last hour of samples, and never more.

One small seam, two stores: a Redis list trimmed to the hour's samples at each write (every gateway
of a distributed deployment reads the same list), or a database table whose older rows are deleted
at each write (the embedded default, where there is no Redis; the samples survive a restart).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aitasks.config import Settings
from aitasks.redis_connect import RedisClient, connect, redis_call
from aitasks.redis_keys import ops_samples_key
from aitasks.store import ops as store
from aitasks.store.database import Database

# How far back the charts go.
SERIES_SECONDS = 3600
# Every call is a short one: no blocking reads.
SOCKET_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Sample:
    """The service's figures at one moment (`at`, epoch seconds); `data` is what the sampler
    measured (see `sampler.py`)."""

    at: float
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at, **self.data}


class Series(ABC):
    """Samples, oldest first, the last `SERIES_SECONDS` of them."""

    @abstractmethod
    async def add(self, sample: Sample) -> None:
        """Keep a sample (and let go of those older than the series' span)."""

    @abstractmethod
    async def since(self, at: float) -> list[Sample]:
        """The samples taken after `at`, oldest first."""

    @abstractmethod
    async def last_at(self) -> float | None:
        """When the newest sample was taken, if there is one."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class RedisSeries(Series):
    """A Redis list of JSON samples, trimmed to the newest `max_samples` at each write."""

    def __init__(self, redis: RedisClient, *, prefix: str, max_samples: int) -> None:
        self.redis = redis
        self.key = ops_samples_key(prefix)
        self.max_samples = max_samples

    async def add(self, sample: Sample) -> None:
        entry = json.dumps({"at": sample.at, "data": sample.data})

        async def write() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.rpush(self.key, entry)
                pipe.ltrim(self.key, -self.max_samples, -1)
                pipe.expire(self.key, SERIES_SECONDS)
                await pipe.execute()

        await redis_call(write)

    async def _all(self) -> list[Sample]:
        raw: list[str] = await redis_call(lambda: self.redis.lrange(self.key, 0, -1))  # type: ignore[arg-type,return-value]
        return [Sample(e["at"], e["data"]) for e in map(json.loads, raw)]

    async def since(self, at: float) -> list[Sample]:
        return [s for s in await self._all() if s.at > at]

    async def last_at(self) -> float | None:
        raw: str | None = await redis_call(lambda: self.redis.lindex(self.key, -1))  # type: ignore[arg-type,return-value]
        return float(json.loads(raw)["at"]) if raw else None

    async def close(self) -> None:
        await self.redis.aclose()


class DatabaseSeries(Series):
    """The `ops_samples` table, rows older than the series' span deleted at each write."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, sample: Sample) -> None:
        at = datetime.fromtimestamp(sample.at, UTC)
        async with self.db.session() as session:
            await store.add_sample(
                session, at, sample.data, keep_since=at - timedelta(seconds=SERIES_SECONDS)
            )

    async def since(self, at: float) -> list[Sample]:
        async with self.db.session() as session:
            rows = await store.samples_since(session, datetime.fromtimestamp(at, UTC))
        return [Sample(_epoch(row.at), row.data) for row in rows]

    async def last_at(self) -> float | None:
        async with self.db.session() as session:
            last = await store.last_sample_at(session)
        return _epoch(last) if last else None


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def open_series(settings: Settings, db: Database, *, in_process: bool) -> Series:
    """The series of this deployment: in Redis, or (the embedded default) in the database."""
    if in_process:
        return DatabaseSeries(db)
    max_samples = math.ceil(SERIES_SECONDS / settings.ops_sample_seconds) + 1
    return RedisSeries(
        connect(settings.effective_redis_url, socket_timeout=SOCKET_TIMEOUT_SECONDS),
        prefix=settings.redis_prefix,
        max_samples=max_samples,
    )
