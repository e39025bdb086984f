"""Every Redis key, stream and group name, in one place.

Each queue's keys carry the hash tag `{q:<queue>}`, so on Redis Cluster all of one queue's
operations land on one node.
"""

from __future__ import annotations

# One consumer group per stream: every worker process is a consumer in it, so each entry goes to
# exactly one of them until it is acknowledged or abandoned.
CONSUMER_GROUP = "workers"

# The stream field that carries the task id.
TASK_FIELD = "task"


def stream_key(prefix: str, queue: str) -> str:
    """The stream that holds the ids of a queue's tasks."""
    return f"{prefix}:{{q:{queue}}}:tasks"


def lock_key(prefix: str, name: str) -> str:
    """A lock with an expiry (`SET NX PX`): one reconciler scan at a time across all workers."""
    return f"{prefix}:lock:{name}"


def rate_key(prefix: str, name: str) -> str:
    """A sliding window of recent calls (a sorted set scored by time) for a shared rate limit."""
    return f"{prefix}:rate:{name}"


def worker_key(prefix: str, worker_id: str) -> str:
    """A worker's last heartbeat (JSON), expiring when the worker stops beating."""
    return f"{prefix}:worker:{worker_id}"


def workers_key(prefix: str) -> str:
    """Every worker seen, scored by its last heartbeat, so the live ones are listed without a
    SCAN; entries older than their TTL are pruned as they are read."""
    return f"{prefix}:workers"


def cancel_channel(prefix: str) -> str:
    """Pub/sub channel on which gateways announce cancelled task ids to every worker. Missed
    messages are harmless: a worker also learns of a cancel when its next lease renewal fails."""
    return f"{prefix}:cancellations"


def events_key(prefix: str, task_id: str) -> str:
    """A task's event log (a capped stream with an expiry), tagged by task for Redis Cluster."""
    return f"{prefix}:{{t:{task_id}}}:events"
