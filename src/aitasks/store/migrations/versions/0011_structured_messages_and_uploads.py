"""Structured messages and uploaded files.

`messages.data` keeps what a message carries beyond its text: a user's images, the tool results a
turn answers with, an assistant's tool calls and reasoning. `tasks.input` keeps the same for the
turn's new input, for the worker. `files.tenant` makes a file a tenant's own without a task (an
upload, `POST /v1/files`), so `files.task_id` may be empty.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("data", sa.JSON, nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("input", sa.JSON, nullable=True))
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("tenant", sa.String(64), nullable=True))
        batch.alter_column("task_id", existing_type=sa.String(32), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM files WHERE task_id IS NULL")
    with op.batch_alter_table("files") as batch:
        batch.alter_column("task_id", existing_type=sa.String(32), nullable=False)
        batch.drop_column("tenant")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("input")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("data")
