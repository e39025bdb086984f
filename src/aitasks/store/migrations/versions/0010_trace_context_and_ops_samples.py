"""A task's trace context, and the operations page's samples.

`tasks.trace_context` holds the W3C traceparent of the task's submit when tracing is on, so every
run of the task joins its trace, however the task comes back to a queue. `ops_samples` holds the
figures the operations page charts (the last hour's), when they are kept in the database.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("trace_context", sa.String(128), nullable=True))
    op.create_table(
        "ops_samples",
        sa.Column("at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("data", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ops_samples")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("trace_context")
