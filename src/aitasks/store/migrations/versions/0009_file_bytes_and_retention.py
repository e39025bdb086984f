"""File bytes in the database (the `postgres` file store), and indexes for the retention purge.

`file_chunks` holds a file's bytes a piece a row. The purge finds finished tasks and files oldest
first, by `tasks.finished_at` and `files.created_at`; deleting a task looks up its messages and
idempotency keys by `task_id` (to unlink, and to cascade), which without an index is a scan of the
whole table per task deleted.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "file_chunks",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_tasks_finished_at", "tasks", ["finished_at"])
    op.create_index("ix_files_created_at", "files", ["created_at"])
    op.create_index("ix_messages_task_id", "messages", ["task_id"])
    op.create_index("ix_idempotency_keys_task_id", "idempotency_keys", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_task_id", table_name="idempotency_keys")
    op.drop_index("ix_messages_task_id", table_name="messages")
    op.drop_index("ix_files_created_at", table_name="files")
    op.drop_index("ix_tasks_finished_at", table_name="tasks")
    op.drop_table("file_chunks")
