"""A task made by OpenAI's Responses API keeps what only a response has.

`tasks.response` holds the request's echo that a response object carries back (instructions,
metadata, store, text format, tools and tool_choice, sampling settings, background), its
`previous_response_id` and its `conversation`; null for every other task.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("response", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("response")
