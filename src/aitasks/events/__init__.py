"""Each task's event log: status changes and reply text as they happen, for streams and waits."""

from __future__ import annotations

from aitasks.config import Settings
from aitasks.events.base import DONE, Event, EventLog

__all__ = ["DONE", "Event", "EventLog", "open_event_log"]


def open_event_log(settings: Settings, *, in_process: bool = False) -> EventLog:
    """Redis Streams, or memory for the embedded default (the same choice as the queue's)."""
    if in_process:
        from aitasks.events.memory import InProcessEventLog

        return InProcessEventLog()
    from aitasks.events.redis import RedisEventLog

    return RedisEventLog.from_url(settings.effective_redis_url, prefix=settings.redis_prefix)
