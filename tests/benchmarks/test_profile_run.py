"""`benchmarks.profile_run` sees every statement an aitasks process sends PostgreSQL: those the
store runs on asyncpg itself (`store/driver.py`: the worker's claim and finish, the gateway's read
of a task) beside SQLAlchemy's."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks.harness import running

# A statement line of the report: sent, of which through SQLAlchemy, the statement's kind.
STATEMENT_LINE = re.compile(r"^\s+(\d+)\s+(\d+)  (.+)$")
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")


def driver_statements(report: str) -> list[str]:
    """The kinds of statement that asyncpg sent and SQLAlchemy never ran (its transactions'
    BEGIN and COMMIT aside)."""
    counts = report.split(" Redis round trips:")[0].split("prepared by prepare()")[0]
    found = []
    for line in counts.splitlines():
        matched = STATEMENT_LINE.match(line)
        if matched and int(matched[2]) == 0 and not matched[3].startswith(TRANSACTION_CONTROL):
            found.append(matched[3])
    return found


def test_the_statements_on_asyncpg_itself_are_counted(tmp_path: Path) -> None:
    with running("aitasks", extra_env={"BENCH_PROFILE_DIR": str(tmp_path)}):
        pass  # started, one task run end to end (the warm-up), stopped: the reports are written
    (gateway,) = tmp_path.glob("api-*.txt")
    (worker,) = tmp_path.glob("worker-*.txt")
    gateway_report, worker_report = gateway.read_text(), worker.read_text()
    assert "SQL statements sent by asyncpg" in gateway_report, gateway_report[:2000]
    # The poll's read on asyncpg's own pool; the claim and the finish on the worker's connection.
    gateway_kinds = driver_statements(gateway_report)
    assert any(kind.startswith("SELECT id, tenant,") for kind in gateway_kinds), gateway_report[
        :3000
    ]
    worker_kinds = driver_statements(worker_report)
    assert any(kind.startswith("UPDATE tasks") for kind in worker_kinds), worker_report[:3000]
