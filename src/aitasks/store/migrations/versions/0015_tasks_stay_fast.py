"""Tasks that stay fast as the table grows: indexes that only hold what their scans look for, so
a task's claim (and every lease renewal) is a HOT update, room on each page for it, and vacuum
that keeps up.

A task's row changes twice after its insert: the claim (status, attempts, worker, lease, start)
and the finish (status, result, finish time). PostgreSQL can make an update HOT (the new version
on the same page, no new entry in any index) only when no indexed column changes, predicates of
partial indexes included. The old `(status, lease_until)` and `(status, expires_at)` indexes made
both updates write a new entry in every index on the table. The scans they served look only at
unfinished tasks, so they become partial indexes on `finished_at IS NULL` (a column the claim does
not touch) keyed by what the scans order by: the claim and a lease renewal no longer touch any
index. The finish still changes `finished_at` (the purge and the operations samples need it
indexed), but its new version enters neither unfinished-only index. `finished_at` and a batch's
tasks are indexed only where set. On PostgreSQL, tasks keep 20% of each page free: once vacuum
has freed space in old pages, inserts fill those pages and, at 100, a claim's new version no
longer fits beside the old one (a 40,000-task soak: 34% of updates HOT at 100, 49% at 80, for a
heap 16% larger; benchmarks/RESULTS.md). Autovacuum visits the table after 2% of it changed
rather than 20% (which, on a table of millions of rows, lets dead versions pile up for hours).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STORAGE = {
    "fillfactor": "80",
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_analyze_scale_factor": "0.02",
}


def _partial(name: str, columns: list[str], where: str) -> None:
    condition = sa.text(where)
    op.create_index(name, "tasks", columns, postgresql_where=condition, sqlite_where=condition)


def upgrade() -> None:
    for name in ("ix_tasks_status_lease", "ix_tasks_status_expires", "ix_tasks_finished_at",
                 "ix_tasks_batch"):  # fmt: skip
        op.drop_index(name, table_name="tasks")
    _partial("ix_tasks_unfinished", ["created_at"], "finished_at IS NULL")
    _partial(
        "ix_tasks_unfinished_expires", ["expires_at"],
        "finished_at IS NULL AND expires_at IS NOT NULL",
    )  # fmt: skip
    _partial("ix_tasks_finished_at", ["finished_at"], "finished_at IS NOT NULL")
    _partial("ix_tasks_batch", ["batch_id", "batch_index"], "batch_id IS NOT NULL")
    if op.get_bind().dialect.name == "postgresql":
        settings = ", ".join(f"{key} = {value}" for key, value in STORAGE.items())
        op.execute(f"ALTER TABLE tasks SET ({settings})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE tasks RESET ({', '.join(STORAGE)})")
    for name in ("ix_tasks_unfinished", "ix_tasks_unfinished_expires", "ix_tasks_finished_at",
                 "ix_tasks_batch"):  # fmt: skip
        op.drop_index(name, table_name="tasks")
    op.create_index("ix_tasks_status_lease", "tasks", ["status", "lease_until"])
    op.create_index("ix_tasks_status_expires", "tasks", ["status", "expires_at"])
    op.create_index("ix_tasks_finished_at", "tasks", ["finished_at"])
    op.create_index("ix_tasks_batch", "tasks", ["batch_id", "batch_index"])
