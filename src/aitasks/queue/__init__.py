"""The queue seam and its implementations; `open_queue` picks one from the settings."""

from __future__ import annotations

from aitasks.config import Settings
from aitasks.queue.base import Delivery, RateSlot, TaskQueue

__all__ = ["Delivery", "RateSlot", "TaskQueue", "open_queue"]


def open_queue(settings: Settings, *, in_process: bool = False) -> TaskQueue:
    """Redis Streams, or the in-process queue when asked for (the embedded default)."""
    # A delivery is handed out again when untouched for longer than a lease.
    redeliver_after = settings.lease_seconds
    fifo = settings.queue_order == "fifo"
    if in_process:
        from aitasks.queue.memory import InProcessQueue

        return InProcessQueue(redeliver_after=redeliver_after, fifo=fifo)
    from aitasks.queue.redis import RedisStreamQueue

    return RedisStreamQueue.from_url(
        settings.effective_redis_url,
        prefix=settings.redis_prefix,
        redeliver_after=redeliver_after,
        fifo=fifo,
    )
