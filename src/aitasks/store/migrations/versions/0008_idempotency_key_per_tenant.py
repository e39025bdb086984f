"""Idempotency keys scoped by a composite primary key (tenant, key).

The key was stored as "<tenant>/<key>", so tenant `acme` with key `dev/k1` and tenant `acme/dev`
with key `k1` were one key. Each row's tenant is its task's (the one that made it), so the
stored string splits without guessing where the tenant ends.

The table is made anew (SQLite cannot change a primary key in place), filled, and put in the old
one's place, with its primary key and index under the old names.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = "idempotency_keys_new"
INDEX = "ix_idempotency_keys_created_at"


def _columns(*key: sa.Column[Any]) -> list[sa.Column[Any]]:
    """The table's columns after its key's."""
    return [
        *key,
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column(
            "task_id", sa.String(32), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _swap_in() -> None:
    """Put `NEW` in place of idempotency_keys, its primary key and index named as before."""
    op.drop_index(INDEX, table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.rename_table(NEW, "idempotency_keys")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"ALTER TABLE idempotency_keys RENAME CONSTRAINT {NEW}_pkey TO idempotency_keys_pkey"
        )
    op.create_index(INDEX, "idempotency_keys", ["created_at"])


def upgrade() -> None:
    op.create_table(
        NEW,
        *_columns(
            sa.Column("tenant", sa.String(64), primary_key=True),
            sa.Column("key", sa.String(200), primary_key=True),
        ),
    )
    # Each key's tenant is its task's; the rest of the stored string is the client's key.
    op.execute(
        f"""
        INSERT INTO {NEW} (tenant, key, request_hash, task_id, created_at)
        SELECT tasks.tenant, substr(k.key, length(tasks.tenant) + 2), k.request_hash, k.task_id,
               k.created_at
        FROM idempotency_keys AS k JOIN tasks ON tasks.id = k.task_id
        WHERE substr(k.key, 1, length(tasks.tenant) + 1) = tasks.tenant || '/'
        """
    )
    _swap_in()


def downgrade() -> None:
    op.create_table(NEW, *_columns(sa.Column("key", sa.String(300), primary_key=True)))
    op.execute(
        f"""
        INSERT INTO {NEW} (key, request_hash, task_id, created_at)
        SELECT tenant || '/' || key, request_hash, task_id, created_at FROM idempotency_keys
        """
    )
    _swap_in()
