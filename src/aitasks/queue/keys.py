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
