"""Every name aitasks gives a thing in Redis, and how long Redis keeps it, in one place.

Each key starts with the operator's prefix (`AITASKS_REDIS_PREFIX`, "aitasks" by default), so
several deployments (or test runs) can share one server, and one `SCAN prefix:*` finds them all.

Keys that one command or script touches together carry the same hash tag (the part in braces), so
on Redis Cluster they hash to one slot and the command is allowed: `{q:<queue>}` for a queue's
stream, `{t:<task>}` for a task's event log, `{k:<key id>}` for an API key's counters. These tags
are part of the deployed layout (tests/integration/test_redis_cluster.py checks that each queue's
keys sit on one node): change one and a running system's keys are orphaned.

What is not here on purpose: how long a finished task's event log is kept and how many events a
log holds (`events/base.py`), because the in-memory log keeps them too; and a worker's heartbeat
TTL and the names of locks and rate windows, which the worker passes through the queue seam.
"""

from __future__ import annotations

# --- Queues (queue/redis.py) --------------------------------------------------------------------

# One consumer group per stream: every worker process is a consumer in it, so each entry goes to
# exactly one of them until it is acknowledged or abandoned.
CONSUMER_GROUP = "workers"

# The stream field that carries the task id: an entry is only a pointer, the database the truth.
TASK_FIELD = "task"
# The field that carries the task's trace context (a W3C traceparent) when tracing is on, so a
# redelivered entry still joins the task's trace; absent otherwise.
TRACE_FIELD = "tp"


def stream_key(prefix: str, queue: str) -> str:
    """The stream that holds the ids of a queue's tasks handed out (moved there from their lane
    by the receive that hands them out, pending until acknowledged); tagged by queue so that the
    group commands (XREADGROUP, XAUTOCLAIM, XACK) and the lane scripts on one queue stay on one
    cluster node."""
    return queue_key_base(prefix, queue) + "tasks"


def queue_key_base(prefix: str, queue: str) -> str:
    """What every key of one queue starts with (its hash tag included): the lane scripts make the
    names of tenants' lists from it, as the functions below do."""
    return f"{prefix}:{{q:{queue}}}:"


def lanes_key(prefix: str, queue: str) -> str:
    """A queue's lane state (a hash): `picks` (tasks handed out, the place in the share
    schedule), `clock:<lane>` (the pass of the tenant a lane served last) and `n:<lane>` (the
    entries waiting in a lane). Lives as long as the queue."""
    return queue_key_base(prefix, queue) + "lanes"


def ring_key(prefix: str, queue: str, lane: str) -> str:
    """The tenants with work waiting in one lane of a queue (a sorted set scored by each one's
    pass): the lowest goes next. A tenant whose list runs dry leaves it; the key goes with the
    last one."""
    return queue_key_base(prefix, queue) + f"ring:{lane}"


def waiting_key(prefix: str, queue: str, lane: str, tenant: str) -> str:
    """One tenant's entries waiting in one lane of a queue (a list, oldest first), each
    `task id|traceparent|weight`; moved to the queue's stream when handed out. Gone when
    empty."""
    return queue_key_base(prefix, queue) + f"wait:{lane}:{tenant}"


def bell_key(prefix: str, queue: str) -> str:
    """A queue's doorbell: a stream with an entry per publish (capped near 64), which idle
    workers wait on with a plain XREAD, taking nothing, from the last id they saw."""
    return queue_key_base(prefix, queue) + "bell"


# The doorbell's length, roughly (XADD MAXLEN ~): only its last id matters.
BELL_LENGTH = 64


# --- Coordination between workers (queue/redis.py) -----------------------------------------------


def lock_key(prefix: str, name: str) -> str:
    """A lock with an expiry (`SET NX PX`): one reconciler scan at a time across all workers.
    Untagged: a lock is one key, alone in its command."""
    return f"{prefix}:lock:{name}"


def rate_key(prefix: str, name: str) -> str:
    """A sliding window of recent calls (a sorted set scored by the server's time) for a rate
    limit every worker shares, such as a model's calls per minute. Expires after one window of
    disuse (set by the script that adds to it)."""
    return f"{prefix}:rate:{name}"


def worker_key(prefix: str, worker_id: str) -> str:
    """A worker's last heartbeat (JSON), expiring when the worker stops beating, so a dead
    worker drops out of `aitasks status` by itself."""
    return f"{prefix}:worker:{worker_id}"


def workers_key(prefix: str) -> str:
    """Every worker seen, scored by when its heartbeat expires, so the live ones are listed
    without a SCAN; entries past their score are pruned as they are read."""
    return f"{prefix}:workers"


def ops_samples_key(prefix: str) -> str:
    """The operations page's samples (JSON, oldest first): a list trimmed to the charts' hour, so
    it never grows past it; it expires an hour after the last sample (no gateway samples)."""
    return f"{prefix}:ops:samples"


def cancel_channel(prefix: str) -> str:
    """Pub/sub channel on which gateways announce cancelled task ids to every worker. Missed
    messages are harmless: a worker also learns of a cancel when its next lease renewal fails."""
    return f"{prefix}:cancellations"


# --- Event logs (events/redis.py) ----------------------------------------------------------------


def events_key(prefix: str, task_id: str) -> str:
    """A task's event log (a capped stream), tagged by task: every command on it touches that one
    key, so any gateway's XREAD for one task goes to one node."""
    return f"{prefix}:{{t:{task_id}}}:events"


def events_fence_key(prefix: str, task_id: str) -> str:
    """Which claim of a task may write its event log (a hash: `run`, `attempt`; see
    `events.base.Fence`), beside the log under the same tag so one script checks and appends.
    Kept when a retry empties the log, so a worker still holding the old run cannot write."""
    return f"{prefix}:{{t:{task_id}}}:fence"


# The fields of one event entry: its type (status, delta, done) and its data as JSON.
EVENT_TYPE_FIELD = "type"
EVENT_DATA_FIELD = "data"

# How long a log that has not reached `done` is kept from its first write: a backstop, so the log
# of a task whose worker died for good does not stay forever. Longer than any task runs.
LIVE_EVENTS_TTL_SECONDS = 24 * 3600


# --- Per-key limits (limits/redis.py) ------------------------------------------------------------


def _key_counter(prefix: str, key_id: str, what: str) -> str:
    # Tagged by API key: each limit script reads and writes several of one key's counters at once.
    return f"{prefix}:{{k:{key_id}}}:{what}"


def rpm_key(prefix: str, key_id: str, minute: int) -> str:
    """An API key's request count in one minute (epoch minutes): the sliding estimate reads this
    minute's and the last one's."""
    return _key_counter(prefix, key_id, f"rpm:{minute}")


def rpm_ttl_seconds(window_seconds: int) -> int:
    """How long a minute's request count is kept: two windows, since the next minute's estimate
    still reads it as "the last minute"."""
    return 2 * window_seconds


def inflight_key(prefix: str, key_id: str) -> str:
    """An API key's tasks in flight (its tasks-in-flight limit): a sorted set of reservations
    (scored by their lease's end) and stored task ids (scored by minus the time they were
    stored). No expiry: it is emptied as tasks end, and checked against the database when it
    refuses one. (Named apart from the plain set an earlier version kept under "inflight".)"""
    return _key_counter(prefix, key_id, "inflight:leases")


def held_tokens_key(prefix: str, key_id: str, ticket: str) -> str:
    """The tokens reserved for one admitted task (or retry ticket) of an API key, as "<day>
    <tokens>": given back to that day's count when the task settles. Expires with the count."""
    return _key_counter(prefix, key_id, f"held:{ticket}")


def tokens_key(prefix: str, key_id: str, day: str) -> str:
    """The tokens an API key's tasks used on one UTC day (YYYY-MM-DD), for its daily quota."""
    return _key_counter(prefix, key_id, f"tokens:{day}")


# How long a day's token count is kept after its latest write: two days, so a count last written
# early in its day still lasts until that day is over (and a while after, for late readers).
TOKENS_TTL_SECONDS = 2 * 86_400
