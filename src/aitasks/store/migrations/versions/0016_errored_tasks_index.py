"""Listing a tenant's failed tasks (`GET /v1/tasks?status=FAILED`, the status page's recent
failures) through an index again: migration 0015 dropped the `status` index, so the listing
walked the tenant's whole history newest first, looking for the rare failure.

The new index holds only the tasks that ended with an error (FAILED, CANCELLED, EXPIRED), keyed
as the listing orders them. Its predicate names `error`, not `status`: a claim changes `status`,
and a predicate on it would make every claim a non-HOT update again (see 0015); `error` is set
only by the finish (which already changes the indexed `finished_at`) and cleared by a retry.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ERRORED = sa.text("error IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_tasks_tenant_errored",
        "tasks",
        ["tenant", "created_at", "id"],
        postgresql_where=ERRORED,
        sqlite_where=ERRORED,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_tenant_errored", table_name="tasks")
