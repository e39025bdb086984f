"""`WebhookDispatcher` on the in-process backends (SQLite in a temporary folder): what it sends, how
it signs, what it records, when it tries again, and that a delivery another dispatcher holds is
not sent twice. The receiver is a real HTTP server that checks signatures by its own code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from aitasks.config import Settings
from aitasks.services import Services
from aitasks.store import webhooks as store
from aitasks.store.migrate import upgrade
from aitasks.store.models import (
    Conversation,
    Task,
    TaskStatus,
    WebhookDelivery,
    as_utc,
    new_id,
    utcnow,
)
from aitasks.webhooks.dispatcher import MAX_RETRY_SECONDS, WebhookDispatcher, local_webhook_secret
from tests.support.webhook_receiver import InvalidSignature, Receiver, verify

# Long enough that a moved `next_attempt_at` is told apart from "due now" beyond clock noise.
RETRY_BASE_SECONDS = 30.0
MAX_ATTEMPTS = 3
# Slack for the time that passes between the dispatcher's clock reading and the test's.
CLOCK_SLACK = timedelta(seconds=5)


def dispatcher_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "webhook_allow_private": True,  # the receiver listens on loopback
        "webhook_retry_base_seconds": RETRY_BASE_SECONDS,
        "webhook_max_attempts": MAX_ATTEMPTS,
        "webhook_timeout_seconds": 5.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Rig:
    """One worker process's share of a deployment: its services and its dispatcher."""

    services: Services
    dispatcher: WebhookDispatcher

    async def delivery(self, delivery_id: str) -> WebhookDelivery:
        async with self.services.db.session() as session:
            row = await session.get(WebhookDelivery, delivery_id)
        assert row is not None
        return row

    async def secret(self) -> str:
        async with self.services.db.session() as session:
            return await local_webhook_secret(session)

    async def add_finished_task(self, url: str, *, due_in: float = 0.0) -> tuple[str, str]:
        """A task that succeeded, with its pending `task.succeeded` delivery to `url`, due
        `due_in` seconds from now; (task id, delivery id)."""
        now = utcnow()
        conversation = Conversation(id=new_id(), title="hi", turns=1)
        task = Task(
            id=new_id(),
            conversation_id=conversation.id,
            turn=1,
            kind="chat",
            model="mock-chat",
            queue="mock",
            provider="mock",
            prompt="hi",
            status=TaskStatus.SUCCESS,
            result={"text": "hello"},
            attempts=1,
            callback_url=url,
            finished_at=now,
        )
        delivery = WebhookDelivery(
            id=f"msg_{new_id()}",
            task_id=task.id,
            event="task.succeeded",
            url=url,
            status=store.PENDING,
            attempts=0,
            next_attempt_at=now + timedelta(seconds=due_in),
            created_at=now,
        )
        async with self.services.db.session() as session, session.begin():
            session.add(conversation)
            await session.flush()
            session.add(task)
            await session.flush()
            session.add(delivery)
        return task.id, delivery.id

    async def make_due(self, delivery_id: str) -> None:
        """Move a delivery's next attempt to now, as the passing of its backoff would."""
        async with self.services.db.session() as session, session.begin():
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(next_attempt_at=utcnow())
            )


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    """Settings on a SQLite file of the test's own, its schema made."""
    made = dispatcher_settings(tmp_path)
    services = Services.open(made, in_process_queue=True)
    try:
        await upgrade(services.db)
    finally:
        await services.close()
    return made


@asynccontextmanager
async def rig(settings: Settings, http: httpx.AsyncClient | None = None) -> AsyncIterator[Rig]:
    """Services and a dispatcher, as one worker process holds them; closed afterwards."""
    services = Services.open(settings, in_process_queue=True)
    dispatcher = WebhookDispatcher(services, http)
    try:
        yield Rig(services, dispatcher)
    finally:
        await dispatcher.http.aclose()
        await services.close()


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Rig]:
    async with rig(settings) as made:
        yield made


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def failing_receiver() -> Iterator[Receiver]:
    made = Receiver(fail_first=-1)
    yield made
    made.close()


def assert_near(moment: datetime, expected: datetime) -> None:
    assert expected - CLOCK_SLACK <= as_utc(moment) <= expected + CLOCK_SLACK, (moment, expected)


async def test_a_due_delivery_is_posted_signed_and_marked_delivered(
    worker: Rig, receiver: Receiver
) -> None:
    task_id, delivery_id = await worker.add_finished_task(receiver.url)

    assert await worker.dispatcher.deliver_due() == 1

    (message,) = receiver.received
    verify(await worker.secret(), message.headers, message.body)
    with pytest.raises(InvalidSignature):
        verify(await worker.secret(), message.headers, message.body + b" ")
    assert message.headers["webhook-id"] == delivery_id
    assert message.headers["content-type"] == "application/json"
    payload = message.payload
    assert payload["type"] == "task.succeeded"
    assert payload["data"]["task_id"] == task_id
    assert payload["data"]["status"] == "SUCCESS"
    assert payload["data"]["result"] == "hello"

    row = await worker.delivery(delivery_id)
    assert row.status == store.DELIVERED
    assert row.attempts == 1
    assert row.last_status_code == 204
    assert row.last_error is None
    assert row.delivered_at is not None
    assert_near(row.delivered_at, utcnow())
    assert row.payload == message.body.decode()  # kept, so a retry would send the same bytes
    # Delivered is final: nothing is due any more.
    assert await worker.dispatcher.deliver_due() == 0
    assert len(receiver.received) == 1


async def test_a_failing_receiver_is_retried_with_backoff_then_given_up(
    worker: Rig, failing_receiver: Receiver
) -> None:
    _, delivery_id = await worker.add_finished_task(failing_receiver.url)

    for attempt in range(1, MAX_ATTEMPTS):
        assert await worker.dispatcher.deliver_due() == 1
        row = await worker.delivery(delivery_id)
        assert row.status == store.PENDING
        assert row.attempts == attempt
        assert row.last_status_code == 500
        assert row.last_error == "HTTP 500: receiver down"
        # Base, then twice the base: the backoff without jitter, so receivers can rely on it.
        delay = min(MAX_RETRY_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempt - 1))
        assert_near(row.next_attempt_at, utcnow() + timedelta(seconds=delay))
        # Not due again before its time.
        assert await worker.dispatcher.deliver_due() == 0
        assert len(failing_receiver.received) == attempt
        await worker.make_due(delivery_id)

    assert await worker.dispatcher.deliver_due() == 1  # the last attempt
    row = await worker.delivery(delivery_id)
    assert row.status == store.FAILED
    assert row.attempts == MAX_ATTEMPTS
    assert row.last_status_code == 500
    assert row.delivered_at is None

    # Given up for good: not sent again, even once its time has passed.
    await worker.make_due(delivery_id)
    assert await worker.dispatcher.deliver_due() == 0
    sent = failing_receiver.received
    assert len(sent) == MAX_ATTEMPTS
    # Every attempt is the same message: one id, the same bytes, each signed anew.
    assert {m.headers["webhook-id"] for m in sent} == {delivery_id}
    assert {m.body for m in sent} == {sent[0].body}
    for message in sent:
        verify(await worker.secret(), message.headers, message.body)


async def test_a_delivery_not_yet_due_is_not_sent(worker: Rig, receiver: Receiver) -> None:
    _, delivery_id = await worker.add_finished_task(receiver.url, due_in=60)

    assert await worker.dispatcher.deliver_due() == 0

    assert receiver.received == []
    row = await worker.delivery(delivery_id)
    assert (row.status, row.attempts, row.payload) == (store.PENDING, 0, None)


class HeldTransport(httpx.AsyncBaseTransport):
    """Sends for real, but holds each request until `release` is set: a dispatcher caught in
    the middle of a slow delivery."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.holding.set()
        await self.release.wait()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_delivery_another_dispatcher_holds_is_not_sent_twice(
    settings: Settings, worker: Rig, receiver: Receiver
) -> None:
    _, delivery_id = await worker.add_finished_task(receiver.url)
    held = HeldTransport()
    async with rig(settings, httpx.AsyncClient(transport=held)) as slow:
        sending = asyncio.create_task(slow.dispatcher.deliver_due())
        await asyncio.wait_for(held.holding.wait(), 10)

        # The other worker's dispatcher looks while the first is mid-delivery: the row is
        # claimed (its next attempt moved past the receiver's timeout), so it is not due.
        assert await worker.dispatcher.deliver_due() == 0
        row = await worker.delivery(delivery_id)
        assert (row.status, row.attempts) == (store.PENDING, 1)
        assert as_utc(row.next_attempt_at) > utcnow() + timedelta(
            seconds=settings.webhook_timeout_seconds
        )

        held.release.set()
        assert await asyncio.wait_for(sending, 10) == 1

    assert [m.headers["webhook-id"] for m in receiver.received] == [delivery_id]
    row = await worker.delivery(delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == (store.DELIVERED, 1, 204)


async def test_two_dispatchers_at_once_send_a_delivery_once(
    settings: Settings, worker: Rig, receiver: Receiver
) -> None:
    delivery_ids = {(await worker.add_finished_task(receiver.url))[1] for _ in range(5)}
    async with rig(settings) as other:
        sent = await asyncio.gather(worker.dispatcher.deliver_due(), other.dispatcher.deliver_due())

    assert sum(sent) == len(delivery_ids)
    assert sorted(m.headers["webhook-id"] for m in receiver.received) == sorted(delivery_ids)
    for delivery_id in delivery_ids:
        row = await worker.delivery(delivery_id)
        assert (row.status, row.attempts) == (store.DELIVERED, 1)


async def test_a_private_target_is_refused_without_a_post(
    settings: Settings, receiver: Receiver
) -> None:
    refusing = settings.model_copy(update={"webhook_allow_private": False})
    async with rig(refusing) as strict:
        _, delivery_id = await strict.add_finished_task(receiver.url)

        assert await strict.dispatcher.deliver_due() == 1

        assert receiver.received == []
        row = await strict.delivery(delivery_id)
        assert row.status == store.PENDING  # a name may resolve elsewhere later: tried again
        assert row.attempts == 1
        assert row.last_status_code is None
        assert row.last_error is not None and "loopback" in row.last_error


async def test_the_first_deliveries_at_once_are_all_sent(worker: Rig, receiver: Receiver) -> None:
    # No local signing secret exists yet: every delivery's preparation races to make it.
    delivery_ids = {(await worker.add_finished_task(receiver.url))[1] for _ in range(8)}

    assert await worker.dispatcher.deliver_due() == len(delivery_ids)

    assert sorted(m.headers["webhook-id"] for m in receiver.received) == sorted(delivery_ids)
    secret = await worker.secret()
    for message in receiver.received:
        verify(secret, message.headers, message.body)
