"""`aitasks status` as rich tables: queues, workers, recent failures."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table


def _age(seconds: float) -> str:
    if seconds < 1:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m"


def status_view(status: dict[str, Any]) -> Group:
    queues = Table(title="Queues", title_justify="left")
    for column in ("queue", "depth", "oldest waiting", "finished/min"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for queue in status["queues"]:
        depth = "down" if queue["depth"] is None else str(queue["depth"])
        queues.add_row(
            queue["name"],
            depth,
            _age(queue["oldest_waiting_seconds"]),
            str(queue["finished_last_minute"]),
        )
    workers = Table(title=f"Workers alive: {len(status['workers'])}", title_justify="left")
    for column in ("worker", "queues", "in flight", "last seen"):
        workers.add_column(column)
    for worker in status["workers"]:
        workers.add_row(
            worker["id"],
            ",".join(worker["queues"]),
            f"{worker['in_flight']}/{worker['concurrency']}",
            worker["last_seen"][11:19],
        )
    failures = Table(title="Recent failures", title_justify="left")
    for column in ("task", "model", "error", "at"):
        failures.add_column(column)
    for task in status["recent_failures"]:
        error = task.get("error") or {}
        failures.add_row(
            task["task_id"][:12],
            task["model"],
            f"{error.get('type', '')}: {error.get('message', '')}"[:60],
            (task.get("finished_at") or "")[11:19],
        )
    return Group(queues, workers, failures)
