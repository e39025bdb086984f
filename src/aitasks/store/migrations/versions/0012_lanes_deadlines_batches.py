"""Priority lanes, fair share, deadlines and batches.

`tasks.priority` is the task's lane and `tasks.weight` its tenant's weight in it (its key's, when
submitted), so whoever publishes it again (the next turn, the reconciler, a retry) puts it back
where it was. `tasks.expires_at` is when a task not yet started ends `EXPIRED` instead, and
`tasks.timeout_seconds` bounds its run across attempts. A batch's tasks name it
(`tasks.batch_id`, their line `batch_index` and the client's `custom_id`); `batches` holds the
batch itself. A key may carry its weight, the highest lane it may use and a default deadline.
Uploaded files keep their purpose and name.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input_file_id", sa.String(32), nullable=True),
        sa.Column("output_file_id", sa.String(32), nullable=True),
        sa.Column("error_file_id", sa.String(32), nullable=True),
        sa.Column("completion_window", sa.String(8), nullable=False),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("errors", sa.JSON, nullable=True),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("in_progress_at", Timestamp, nullable=True),
        sa.Column("finalizing_at", Timestamp, nullable=True),
        sa.Column("completed_at", Timestamp, nullable=True),
        sa.Column("failed_at", Timestamp, nullable=True),
        sa.Column("expired_at", Timestamp, nullable=True),
        sa.Column("cancelling_at", Timestamp, nullable=True),
        sa.Column("cancelled_at", Timestamp, nullable=True),
    )
    op.create_index("ix_batches_tenant_created", "batches", ["tenant", "created_at", "id"])
    op.create_index("ix_batches_status", "batches", ["status"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("priority", sa.String(16), nullable=False, server_default="default")
        )
        batch.add_column(sa.Column("weight", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("expires_at", Timestamp, nullable=True))
        batch.add_column(sa.Column("timeout_seconds", sa.Float, nullable=True))
        batch.add_column(sa.Column("batch_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("batch_index", sa.Integer, nullable=True))
        batch.add_column(sa.Column("custom_id", sa.String(200), nullable=True))
        batch.create_index("ix_tasks_status_expires", ["status", "expires_at"])
        batch.create_index("ix_tasks_batch", ["batch_id", "batch_index"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("weight", sa.Integer, nullable=True))
        batch.add_column(sa.Column("max_priority", sa.String(16), nullable=True))
        batch.add_column(sa.Column("expires_after", sa.Float, nullable=True))
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("purpose", sa.String(32), nullable=True))
        batch.add_column(sa.Column("filename", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("filename")
        batch.drop_column("purpose")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_after")
        batch.drop_column("max_priority")
        batch.drop_column("weight")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_batch")
        batch.drop_index("ix_tasks_status_expires")
        for column in ("custom_id", "batch_index", "batch_id", "timeout_seconds", "expires_at",
                       "weight", "priority"):  # fmt: skip
            batch.drop_column(column)
    op.drop_index("ix_batches_status", "batches")
    op.drop_index("ix_batches_tenant_created", "batches")
    op.drop_table("batches")
