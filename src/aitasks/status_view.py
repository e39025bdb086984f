"""`aitasks status` as rich tables: queues, lanes, workers, the caller's batches, recent failures;
and one batch's progress bar (`aitasks status --batch ID`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

ENDED = {"completed", "failed", "expired", "cancelled"}


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
    return Group(queues, _lanes(status), _batches(status.get("batches", [])), workers, failures)


def _lanes(status: dict[str, Any]) -> Table:
    """Each lane with work waiting, its depth and oldest wait; the caller's own in the title."""
    mine = " · ".join(f"{row['lane']} {row['depth']}" for row in status.get("mine", []))
    lanes = Table(title=f"Lanes (yours waiting: {mine or 'none'})", title_justify="left")
    for column in ("queue", "lane", "waiting", "oldest waiting"):
        lanes.add_column(column, justify="left" if column in ("queue", "lane") else "right")
    for row in status.get("lanes", []):
        if row["depth"]:
            age = _age(row["oldest_waiting_seconds"])
            lanes.add_row(row["queue"], row["lane"], str(row["depth"]), age)
    return lanes


def _bar(batch: dict[str, Any], width: int = 30) -> ProgressBar:
    counts = batch["counts"]
    done = counts["succeeded"] + counts["failed"]
    return ProgressBar(total=max(1, counts["total"]), completed=done, width=width)


def _batches(batches: list[dict[str, Any]]) -> Table:
    table = Table(title="Your batches running", title_justify="left")
    for column in ("batch", "status", "progress", "done", "failed"):
        table.add_column(column)
    for batch in batches:
        counts = batch["counts"]
        done = counts["succeeded"] + counts["failed"]
        table.add_row(batch["id"][:12], batch["status"], _bar(batch, 20),
                      f"{done}/{counts['total']}", str(counts["failed"]))  # fmt: skip
    return table


def batch_view(batch: dict[str, Any]) -> Group:
    """One batch: its status, a progress bar, and its lines by how far they have come."""
    counts = batch["counts"]
    done = counts["succeeded"] + counts["failed"]
    share = done / counts["total"] if counts["total"] else 1.0
    head = Text(f"batch {batch['id']}  {batch['status']}  {done}/{counts['total']} ({share:.0%})")
    tail = Text(
        f"succeeded {counts['succeeded']}  failed {counts['failed']}  running {counts['running']}"
        f"  waiting {counts['pending']}"
    )
    parts: list[Any] = [head, _bar(batch, 50), tail]
    for error in (batch.get("errors") or [])[:10]:
        parts.append(Text(f"line {error['line']}: {error['code']}: {error['message']}"))
    return Group(*parts)


def batch_ended(batch: dict[str, Any]) -> bool:
    return batch["status"] in ENDED


def follow_batch(fetch: Callable[[], dict[str, Any]], *, as_json: bool, watch: bool) -> None:
    """Show a batch (`fetch` reads it): once, as JSON or a progress bar; or, with `watch`, a bar
    refreshed every second until the batch has ended."""
    shown = fetch()
    if as_json:
        print(json.dumps(shown, indent=2))
    elif not watch:
        Console().print(batch_view(shown))
    else:
        with Live(batch_view(shown), refresh_per_second=2) as live:
            while not batch_ended(shown):
                time.sleep(1)
                shown = fetch()
                live.update(batch_view(shown))
