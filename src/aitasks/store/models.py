"""The tables: conversations, their messages, tasks, and generated files (and their bytes, with
the `postgres` file store).

Ordering is by `turn`: every submit takes the conversation's next turn number under a row lock, so
turns number the conversation's requests in the order they were accepted, whatever order workers
finish them in. A turn holds at most one user and one assistant message (a unique constraint), which
is what makes a doubled reply impossible rather than merely unlikely.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast, overload

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aitasks.auth.caller import LOCAL_TENANT


class TaskStatus(StrEnum):
    """A task's life, in the seed's spelling."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    # Not started by its deadline (`expires_after`): ended without calling the model.
    EXPIRED = "EXPIRED"


TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED}
)
UNFINISHED_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})
# The statuses a task only ever ends in with its `error` set (what `ix_tasks_tenant_errored` holds).
ERRORED_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED})


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


def new_id() -> str:
    """A URL-safe, unguessable id of 32 hex digits: the time in milliseconds (48 bits), then 80
    random bits. Ids made later sort later, so each index keyed by one (tasks', conversations',
    messages' by task) grows at its right edge, its pages filled, where random ones wrote all
    over every such index: each insert dirtied a page of its own, half-filled pages split, and a
    page first dirtied after a checkpoint is a full page in the WAL (`benchmarks.soak`, 250,000
    tasks: 1,010 -> 1,093 tasks/s, conversations' indexes 37 -> 32 MB)."""
    return f"{int(time.time() * 1000) & _MS_MASK:012x}{secrets.token_hex(10)}"


_MS_MASK = (1 << 48) - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
@overload
def as_utc(moment: datetime | None) -> datetime | None: ...


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY, so the big integer becomes that there.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    # SQLAlchemy reads this from the class itself.
    type_annotation_map = {  # noqa: RUF012
        dict[str, Any]: JSON,
        list[dict[str, str]]: JSON,
        list[dict[str, Any]]: JSON,
        list[str]: JSON,
        datetime: Timestamp,
    }


def table_of(model: type[Base]) -> Table:
    """A mapped class's Core table, for statements that skip the ORM on hot paths."""
    return cast(Table, model.__table__)


class Conversation(Base):
    __tablename__ = "conversations"
    # Listing, by last activity.
    __table_args__ = (Index("ix_conversations_tenant_updated", "tenant", "updated_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # Whose it is: every read is filtered by the caller's tenant.
    tenant: Mapped[str] = mapped_column(String(64), default=LOCAL_TENANT)
    title: Mapped[str | None] = mapped_column(String(200))
    # What every chat turn's context starts with.
    system_prompt: Mapped[str | None] = mapped_column(Text)
    # Turns accepted so far; the next submit takes turns + 1.
    turns: Mapped[int] = mapped_column(Integer, default=0)
    # A summary of turns 1..summary_turn, made by a model's `summary_model` when they no longer
    # fit its window, and reused until more turns need folding in.
    summary: Mapped[str | None] = mapped_column(Text)
    summary_turn: Mapped[int | None] = mapped_column(Integer)
    # The client's own key-value pairs (OpenAI's `metadata`); named apart from SQLAlchemy's.
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


def _where(condition: str) -> dict[str, Any]:
    """A partial index's predicate, the same on both stores."""
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


# The `tasks` table's storage parameters on PostgreSQL (migration 0015 sets them).
TASKS_STORAGE = {
    "fillfactor": 80,
    "autovacuum_vacuum_scale_factor": 0.02,
    "autovacuum_analyze_scale_factor": 0.02,
}


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("conversation_id", "turn", name="uq_tasks_conversation_turn"),
        # No index names a column the claim or a lease renewal changes (status, lease_until, ...),
        # predicates included, so both are HOT updates: no new index entries (migration 0015).
        # The reconciler's, the samples' and the expiry sweep's scans: unfinished tasks only,
        # oldest first (their queries say `finished_at IS NULL` so the planner can use them).
        Index("ix_tasks_unfinished", "created_at", **_where("finished_at IS NULL")),
        Index(
            "ix_tasks_unfinished_expires",
            "expires_at",
            **_where("finished_at IS NULL AND expires_at IS NOT NULL"),
        ),
        # Listing, newest first, one tenant's.
        Index("ix_tasks_tenant_created", "tenant", "created_at", "id"),
        # Listing one tenant's failures (rare among its tasks): those that ended with an error.
        # Not `status` in the predicate: a claim changes it (migration 0016).
        Index(
            "ix_tasks_tenant_errored", "tenant", "created_at", "id", **_where("error IS NOT NULL")
        ),
        # The purge and the operations samples: finished tasks, by when.
        Index("ix_tasks_finished_at", "finished_at", **_where("finished_at IS NOT NULL")),
        # A batch's tasks, in line order: its progress and its results.
        Index("ix_tasks_batch", "batch_id", "batch_index", **_where("batch_id IS NOT NULL")),
        # Room on each page for a claim's new version once vacuum's freed space is being reused
        # (49% of updates HOT against 34% without, 40,000 tasks); vacuum after 2% changed.
        {"postgresql_with": TASKS_STORAGE},
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), default=LOCAL_TENANT)
    # The API key that submitted it: its limits count this task, its secret signs the webhooks.
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    # Where to POST the task's webhooks, and the events asked for beyond the terminal ones.
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_events: Mapped[list[str] | None] = mapped_column(JSON)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    turn: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    # The model that produced the result: `model`, or one of its fallbacks.
    served_model: Mapped[str | None] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(50))
    prompt: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.PENDING)
    # {"text": ...} for chat, {"files": [file ids]} for images.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # {"type", "message", "attempts"} once the task has failed for good.
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Parameters for the provider: temperature, max_tokens, ... for chat; n and size for images.
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Earlier messages the client sent with the request ([{"role", "content", ...}], the OpenAI
    # way, structured as `providers.messages` keeps them); when null the context is the
    # conversation's history.
    context: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # The turn's input beyond its prompt text: {"images": [...]} or {"tool_results": [...]}
    # (`providers.messages`); null for a plain prompt.
    input: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # {"prompt_tokens", "completion_tokens", "total_tokens"} once it succeeded.
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The trace the task belongs to (the W3C traceparent of its submit) when tracing is on: its
    # runs join it however they come about (redelivery, reconciler, retry).
    trace_context: Mapped[str | None] = mapped_column(String(128))
    # Its lane (`aitasks.priority.Lane`) and its tenant's weight there: where every publish of
    # it puts it.
    priority: Mapped[str] = mapped_column(String(16), default="default", server_default="default")
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Not started by then: it ends EXPIRED, without calling the model.
    expires_at: Mapped[datetime | None]
    # Its run, across attempts, may take this long from its first start.
    timeout_seconds: Mapped[float | None] = mapped_column(Float)
    # The batch it is a line of, its line (from 0) and the client's id for it.
    batch_id: Mapped[str | None] = mapped_column(String(32))
    batch_index: Mapped[int | None] = mapped_column(Integer)
    custom_id: Mapped[str | None] = mapped_column(String(200))
    # A task made by OpenAI's Responses API: the request's echo a response object carries back
    # (instructions, metadata, store, text, tools, ...), its previous_response_id and its
    # conversation (`api/openai/response_view.py`); null for every other task.
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # One user and one assistant message per turn; also the index history is read through.
        UniqueConstraint("conversation_id", "turn", "role", name="uq_messages_turn_role"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    turn: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # Ids of files (generated images) that belong to this message.
    files: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Its structure beyond the text (`providers.messages`): a user's images or tool results, an
    # assistant's tool calls and reasoning; null for a plain message.
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Indexed: deleting a task (the purge) finds its messages by it.
    task_id: Mapped[str | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StoredFile(Base):
    __tablename__ = "files"
    # The purge: files, oldest first.
    __table_args__ = (Index("ix_files_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The task that made it or was sent it (it goes with the task); none for an upload.
    task_id: Mapped[str | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    # Whose it is, when it is not reached through a task (an upload, an image a user sent).
    tenant: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    # Where the storage backend keeps the bytes (a relative path for the local folder).
    storage_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # An upload's purpose (`batch`, ...) and name; `batch_output` / `batch_error` for a batch's
    # results, whose bytes are made from its tasks when read (no `storage_key` holds them).
    purpose: Mapped[str | None] = mapped_column(String(32))
    filename: Mapped[str | None] = mapped_column(String(300))


class FileChunk(Base):
    """A file's bytes in the database (the `postgres` file store), a piece a row, so a file is
    written and read a piece at a time rather than whole. Piece 0 always exists (empty for an
    empty file); a key without it holds nothing."""

    __tablename__ = "file_chunks"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class IdempotencyKey(Base):
    """A client's `Idempotency-Key` and the task its first request made."""

    __tablename__ = "idempotency_keys"

    # Whose key it is and the client's key, as two columns of the primary key: two tenants may
    # pick the same key, and no pair of (tenant, key) can be spelled like another's.
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    # SHA-256 of the request, so a reused key with another body is told apart.
    request_hash: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ApiKey(Base):
    """An API key. Only a hash of its secret is kept; the secret is shown once, when made."""

    __tablename__ = "api_keys"

    # The public part of the key (`ait_<id>_<secret>`): found by it, then the hash is compared.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    # Signs this key's webhooks (Standard Webhooks `whsec_...`); the service needs it in clear.
    webhook_secret: Mapped[str] = mapped_column(String(100))
    rpm: Mapped[int | None] = mapped_column(Integer)
    max_inflight: Mapped[int | None] = mapped_column(Integer)
    daily_tokens: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    # Its tenant's weight in a lane's fair share (None: 1), the highest lane it may use (None:
    # any), and the deadline its tasks get when they name none (seconds; None: no deadline).
    weight: Mapped[int | None] = mapped_column(Integer)
    max_priority: Mapped[str | None] = mapped_column(String(16))
    expires_after: Mapped[float | None] = mapped_column(Float)


class WebhookDelivery(Base):
    """One webhook message for one event of a task, and how its delivery went. Written in the
    same transaction as the state change it reports, so none is lost (a transactional outbox)."""

    __tablename__ = "webhook_deliveries"
    # The dispatcher's scan: what is due.
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    # The `webhook-id`: the same on every retry, so receivers can drop repeats.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    # pending -> delivered | failed (after the last attempt).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # The body, fixed at the first attempt so every retry sends the same bytes.
    payload: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class ServiceSecret(Base):
    """Secrets every gateway must share, made once by whichever starts first (the key that signs
    file URLs; the webhook secret of the keyless local tenant)."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class OpsSample(Base):
    """One sample of the service's figures for the operations page's charts, when they are kept
    in the database (the embedded default; on Redis they live in a bounded list). Rows older
    than the charts' hour are deleted as new ones come."""

    __tablename__ = "ops_samples"

    at: Mapped[datetime] = mapped_column(primary_key=True)
    # Per queue: finished, failed, depth, oldest wait, wait and run percentiles (`aitasks.ops`).
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class Batch(Base):
    """Many requests accepted as one (`lifecycle/batches.py`): its tasks name it. OpenAI's
    statuses: validating, failed, in_progress, finalizing, completed, expired, cancelling,
    cancelled; each step's time is kept, as OpenAI's batch object shows them."""

    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_tenant_created", "tenant", "created_at", "id"),
        # The finaliser's scan: batches still going.
        Index("ix_batches_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    # Which API made it: `openai` (its output is OpenAI's JSONL) or `seed`.
    surface: Mapped[str] = mapped_column(String(16))
    endpoint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    input_file_id: Mapped[str | None] = mapped_column(String(32))
    output_file_id: Mapped[str | None] = mapped_column(String(32))
    error_file_id: Mapped[str | None] = mapped_column(String(32))
    completion_window: Mapped[str] = mapped_column(String(8))
    # The client's own (OpenAI's `metadata`); the attribute is named apart from SQLAlchemy's.
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    # Why it failed: [{"line", "code", "message", "param"}], one per bad line.
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer, default=0)
    # Counted when it ends; while it runs they are counted from its tasks.
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    in_progress_at: Mapped[datetime | None]
    finalizing_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    cancelling_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
