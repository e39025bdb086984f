"""Prometheus metrics, one definition each.

Every process exposes its own: the gateway at `/metrics` (with the queue gauges, measured when
scraped), each worker on `aitasks worker --metrics-port PORT`; `aitasks up` has both in one. Scrape
them all and sum by label: no state is shared through Redis, so a dead worker's counters vanish with
it rather than lingering.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Seconds, from milliseconds to the long tail of slow models.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

TASKS_SUBMITTED = Counter(
    "aitasks_tasks_submitted", "Tasks accepted by the gateway.", ["model", "queue"]
)
TASKS_FINISHED = Counter(
    "aitasks_tasks_finished", "Tasks a worker brought to an end.", ["model", "queue", "status"]
)
RETRIES = Counter("aitasks_retries", "Provider calls tried again after an error.", ["model"])
FALLBACKS = Counter("aitasks_fallbacks", "Tasks handed to a fallback model.", ["model"])
IN_FLIGHT = Gauge("aitasks_tasks_in_flight", "Tasks this worker is running.", ["queue"])
WAIT_SECONDS = Histogram(
    "aitasks_task_wait_seconds",
    "From submit to a worker taking the task.",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
RUN_SECONDS = Histogram(
    "aitasks_task_run_seconds",
    "From a worker taking the task to its end, retries included.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_SECONDS = Histogram(
    "aitasks_provider_call_seconds",
    "One provider call, as the worker saw it.",
    ["model", "provider", "outcome"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge("aitasks_queue_depth", "Entries a queue holds, delivered or not.", ["queue"])
OLDEST_WAITING = Gauge(
    "aitasks_queue_oldest_waiting_seconds",
    "Age of the oldest PENDING task of a queue (0 when none).",
    ["queue"],
)

# Per lane and per tenant, measured as the gateway is scraped (from the database). Tenants are
# bounded: the `TENANTS_SHOWN` with most waiting, the rest summed under "other".
LANE_DEPTH = Gauge(
    "aitasks_lane_depth", "Tasks waiting (PENDING) in a lane of a queue.", ["queue", "lane"]
)
LANE_OLDEST_WAITING = Gauge(
    "aitasks_lane_oldest_waiting_seconds",
    "Age of the oldest PENDING task of a lane of a queue (0 when none).",
    ["queue", "lane"],
)
TENANT_DEPTH = Gauge(
    "aitasks_tenant_depth", "Tasks a tenant has waiting (PENDING), by lane.", ["tenant", "lane"]
)
TENANT_OLDEST_WAITING = Gauge(
    "aitasks_tenant_oldest_waiting_seconds",
    "Age of a tenant's oldest PENDING task in a lane.",
    ["tenant", "lane"],
)
TENANTS_SHOWN = 10
