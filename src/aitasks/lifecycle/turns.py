"""Turn order: a conversation's next turn runs once the one before it has ended."""

from __future__ import annotations

from aitasks.lifecycle.placement import publish
from aitasks.priority import QueuedTask
from aitasks.services import Services
from aitasks.store import claims
from aitasks.store.models import Task


async def publish_next_turn(services: Services, next_turn: QueuedTask | None) -> None:
    """Hand the waiting turn to its queue, in its own lane (already found, by the transaction
    that ended the turn before it): a turn's lane is its own, whatever the earlier one's."""
    if next_turn is not None:
        await publish(services, next_turn)


async def release_next_turn(services: Services, task: Task) -> None:
    """`task` has ended (finished, cancelled, given up): find its conversation's next waiting
    turn and hand it to its queue."""
    async with services.db.session() as session:
        waiting = await claims.next_waiting_turn(session, task)
    await publish_next_turn(services, waiting)
