"""Per-key limits, shared by every gateway and worker: requests per minute, tasks in flight,
tokens per day. `open_limits` picks Redis, or memory on the embedded default."""

from __future__ import annotations

from aitasks.config import Settings
from aitasks.limits.base import Limits

__all__ = ["Limits", "open_limits"]


def open_limits(settings: Settings, *, in_process: bool = False) -> Limits:
    if in_process:
        from aitasks.limits.memory import InProcessCounters

        return Limits(InProcessCounters())
    from aitasks.limits.redis import RedisCounters

    return Limits(
        RedisCounters.from_url(settings.effective_redis_url, prefix=settings.redis_prefix)
    )
