"""Sends due webhook deliveries; one dispatcher runs in every worker process.

Deliveries are rows (`store.webhooks`), so a dispatcher that dies loses nothing: what it had
claimed is due again once its claim lapses. A dispatcher wakes when its own worker finishes a
task with a callback, and otherwise looks for due rows every `POLL_SECONDS` (retries, and the
cancellations gateways record).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks import telemetry
from aitasks.auth.tokens import new_webhook_secret
from aitasks.backoff import backoff_seconds
from aitasks.links import Links
from aitasks.services import Services
from aitasks.store import api_keys as store_keys
from aitasks.store import webhooks as store
from aitasks.store.models import Task, WebhookDelivery, utcnow
from aitasks.views import task_view
from aitasks.webhooks import openai_events
from aitasks.webhooks.signing import signed_headers
from aitasks.webhooks.targets import RefusedTarget, check_resolved

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
BATCH = 50
MAX_RETRY_SECONDS = 3600.0
# What is kept of a receiver's error answer.
ERROR_CHARS = 300
# The keyless local tenant's signing secret (auth off), in the service's secrets.
LOCAL_SECRET = "webhook_local"


class WebhookDispatcher:
    def __init__(self, services: Services, http: httpx.AsyncClient | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.http = http or httpx.AsyncClient(follow_redirects=False)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    sent = await self.deliver_due()
                except Exception as exc:  # the database is down, most likely: try again later
                    log.warning("webhooks: cannot read due deliveries: %s", exc)
                    sent = 0
                if sent < BATCH:
                    await self._sleep(stop)
        finally:
            await self.http.aclose()

    async def _sleep(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waits, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()

    async def deliver_due(self) -> int:
        """Send what is due now; how many were sent."""
        # Held past the receiver's timeout, so a slow receiver is never sent the message twice.
        lease = self.settings.webhook_timeout_seconds + 30
        async with self.services.db.session() as session:
            due = await store.claim_due(session, limit=BATCH, lease_seconds=lease)
        await asyncio.gather(*(self._deliver(d) for d in due))
        return len(due)

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        try:
            payload, secret, trace = await self._prepare(delivery)
        except Exception:
            log.exception("webhook %s: cannot prepare it", delivery.id)
            return  # due again once its claim lapses
        if payload is None:
            return  # the task is gone (its conversation deleted): the delivery went with it
        status_code: int | None = None
        error: str | None = None
        # In the task's trace; the receiver gets it as `traceparent`, to join it.
        with webhook_span(delivery, trace) as sending:
            try:
                await check_resolved(
                    delivery.url, allow_private=self.settings.webhook_allow_private
                )
                body = payload.encode()
                headers = signed_headers(secret, delivery.id, int(time.time()), body)
                response = await self.http.post(
                    delivery.url,
                    content=body,
                    headers={**headers, **telemetry.headers()},
                    timeout=self.settings.webhook_timeout_seconds,
                )
                status_code = response.status_code
                if not response.is_success:
                    error = f"HTTP {status_code}: {response.text[:ERROR_CHARS]}"
            except RefusedTarget as exc:
                error = exc.message
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS] or type(exc).__name__
            sending.set("http.response.status_code", status_code)
            if error is not None:
                sending.fail("webhook_failed", error)
        retry_at = None
        if error is not None and delivery.attempts < self.settings.webhook_max_attempts:
            delay = backoff_seconds(
                delivery.attempts,
                base=self.settings.webhook_retry_base_seconds,
                cap=MAX_RETRY_SECONDS,
                jitter=False,
            )
            retry_at = utcnow() + timedelta(seconds=delay)
        if error is not None:
            log.info("webhook %s to %s: attempt %d failed: %s",
                     delivery.id, delivery.url, delivery.attempts, error)  # fmt: skip
        async with self.services.db.session() as session:
            await store.record_attempt(
                session,
                delivery,
                payload=payload,
                status_code=status_code,
                error=error,
                retry_at=retry_at,
            )

    async def _prepare(self, delivery: WebhookDelivery) -> tuple[str | None, str, str | None]:
        """The body (fixed at the first attempt, so every retry sends the same bytes), the
        secret that signs it (the submitting key's, or the local tenant's), and the task's trace
        context."""
        async with self.services.db.session() as session:
            async with session.begin():
                task = await session.get(Task, delivery.task_id)
                if task is None:
                    return None, "", None
                trace = task.trace_context
                key_id = task.api_key_id
                key = await store_keys.key_by_id(session, key_id) if key_id else None
                secret = key.webhook_secret if key else None
                # Made while the task is loaded: making the local secret below may roll back
                # (another dispatcher made it first), which leaves the task unreadable.
                payload = delivery.payload
                if payload is None:
                    payload = self._payload(delivery, task)
            if secret is None:
                secret = await local_webhook_secret(session)
        return payload, secret, trace

    def _payload(self, delivery: WebhookDelivery, task: Task) -> str:
        """The message's body: its event, when it was made, and the task as the API shows it;
        for a response, OpenAI's thin event instead (`openai_events.py`)."""
        if openai_events.is_response(task):
            thin = openai_events.event_body(delivery.id, delivery.event, task)
            if thin is not None:
                return thin
        links = Links(
            self.settings.public_url, self.services.file_signer, self.services.store_links
        )
        return json.dumps(
            {
                "type": delivery.event,
                "timestamp": utcnow().isoformat(),
                "data": task_view(task, links).model_dump(mode="json"),
            },
            ensure_ascii=False,
        )


def webhook_span(delivery: WebhookDelivery, trace: str | None) -> telemetry.SpanScope:
    """The span of one delivery attempt, a child of the task's submit."""
    if not telemetry.enabled():
        return telemetry.NOTHING
    attributes: telemetry.Attributes = {
        "http.request.method": "POST",
        "url.full": delivery.url,
        "aitasks.task_id": delivery.task_id,
        "aitasks.webhook.id": delivery.id,
        "aitasks.webhook.attempt": delivery.attempts,
    }
    parent, links = telemetry.parent_and_links(trace)
    return telemetry.span(
        f"webhook {delivery.event}", attributes, kind="client", parent=parent, links=links
    )


async def local_webhook_secret(session: AsyncSession) -> str:
    """The signing secret of the keyless local tenant (auth off), shared by every process."""
    return await store_keys.service_secret(session, LOCAL_SECRET, make=new_webhook_secret())
