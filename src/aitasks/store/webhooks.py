"""Webhook deliveries: made in the transaction of the state change they report (so none is
lost), claimed by the dispatchers, and their outcome recorded. Their SQL lives only here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.store.models import Task, TaskStatus, WebhookDelivery, new_id, utcnow
from aitasks.store.scope import require

EVENT_OF_STATUS = {
    TaskStatus.RUNNING: "task.running",
    TaskStatus.SUCCESS: "task.succeeded",
    TaskStatus.FAILED: "task.failed",
    TaskStatus.CANCELLED: "task.cancelled",
    TaskStatus.EXPIRED: "task.expired",
}
# Always sent when a task has a callback_url; others only when asked for in callback_events.
TERMINAL_EVENTS = frozenset({"task.succeeded", "task.failed", "task.cancelled", "task.expired"})
EVENTS = frozenset(EVENT_OF_STATUS.values())

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def add_delivery(
    session: AsyncSession,
    task_id: str,
    url: str | None,
    events: Sequence[str] | None,
    status: str,
) -> None:
    """Add the delivery a task's move to `status` calls for (none without a callback, or for an
    event not asked for) to the session's transaction, the one that makes that move."""
    row = delivery_row(task_id, url, events, status)
    if row is not None:
        session.add(WebhookDelivery(**row))


def delivery_row(
    task_id: str, url: str | None, events: Sequence[str] | None, status: str
) -> dict[str, Any] | None:
    """The columns of the delivery a task's move to `status` calls for, or None (see
    `add_delivery`; the worker's finish writes them with the driver itself)."""
    event = EVENT_OF_STATUS.get(TaskStatus(status))
    if url is None or event is None:
        return None
    if event not in TERMINAL_EVENTS and event not in (events or ()):
        return None
    now = utcnow()
    return {
        "id": f"msg_{new_id()}",
        "task_id": task_id,
        "event": event,
        "url": url,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


async def claim_due(
    session: AsyncSession, *, limit: int, lease_seconds: float
) -> Sequence[WebhookDelivery]:
    """Take up to `limit` due deliveries for this dispatcher: each is counted as an attempt and
    hidden from the others for `lease_seconds` (after which, had this one died, it is due again)."""
    now = utcnow()
    due = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with session.begin():
        claimed = await session.scalars(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due.scalar_subquery()))
            .values(
                attempts=WebhookDelivery.attempts + 1,
                next_attempt_at=now + timedelta(seconds=lease_seconds),
            )
            .returning(WebhookDelivery)
            .execution_options(populate_existing=True)
        )
        return claimed.all()


async def record_attempt(
    session: AsyncSession,
    delivery: WebhookDelivery,
    *,
    payload: str,
    status_code: int | None,
    error: str | None,
    retry_at: datetime | None,
) -> None:
    """Write how an attempt went: delivered (no error), to be tried again at `retry_at`, or
    failed for good (no `retry_at`). Fenced by the attempt, so a stale dispatcher writes nothing."""
    now = utcnow()
    if error is None:
        outcome = {"status": DELIVERED, "delivered_at": now}
    elif retry_at is not None:
        outcome = {"status": PENDING, "next_attempt_at": retry_at}
    else:
        outcome = {"status": FAILED}
    async with session.begin():
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.attempts == delivery.attempts,
                WebhookDelivery.status == PENDING,
            )
            .values(payload=payload, last_status_code=status_code, last_error=error, **outcome)
        )


async def deliveries_of(
    session: AsyncSession, task_id: str, *, tenant: str
) -> Sequence[WebhookDelivery]:
    """The tenant's task's deliveries, oldest first; `TaskNotFound` when the task is not its."""
    await require(session, Task, task_id, tenant=tenant)
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.task_id == task_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    )
    return rows.all()
