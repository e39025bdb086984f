"""Conversations take a system prompt, and are listed by last activity.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("system_prompt", sa.Text(), nullable=True))
    op.create_index("ix_conversations_updated", "conversations", ["updated_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_conversations_updated", table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("system_prompt")
