"""Tenants: API keys, an owner on conversations and tasks, webhooks and their deliveries.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    # What existed before tenants belongs to the keyless local tenant.
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("tenant", sa.String(64), nullable=False, server_default="local"))
    op.drop_index("ix_conversations_updated", table_name="conversations")
    op.create_index(
        "ix_conversations_tenant_updated", "conversations", ["tenant", "updated_at", "id"]
    )
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("tenant", sa.String(64), nullable=False, server_default="local"))
        batch.add_column(sa.Column("api_key_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("callback_events", sa.JSON(), nullable=True))
    op.drop_index("ix_tasks_created", table_name="tasks")
    op.create_index("ix_tasks_tenant_created", "tasks", ["tenant", "created_at", "id"])
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("key", type_=sa.String(300), existing_type=sa.String(200))
    op.execute("UPDATE idempotency_keys SET key = 'local/' || key")

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=False, index=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("webhook_secret", sa.String(100), nullable=False),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("max_inflight", sa.Integer(), nullable=True),
        sa.Column("daily_tokens", sa.BigInteger(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp, nullable=True),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "task_id",
            sa.String(32),
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("delivered_at", Timestamp, nullable=True),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_secrets")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("api_keys")
    op.execute("DELETE FROM idempotency_keys WHERE key NOT LIKE 'local/%'")
    op.execute("UPDATE idempotency_keys SET key = substr(key, 7)")
    op.drop_index("ix_tasks_tenant_created", table_name="tasks")
    op.create_index("ix_tasks_created", "tasks", ["created_at", "id"])
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("callback_events")
        batch.drop_column("callback_url")
        batch.drop_column("api_key_id")
        batch.drop_column("tenant")
    op.drop_index("ix_conversations_tenant_updated", table_name="conversations")
    op.create_index("ix_conversations_updated", "conversations", ["updated_at", "id"])
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("tenant")
