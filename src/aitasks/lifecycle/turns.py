"""Turn order: a conversation's next turn runs once the one before it has ended."""

from __future__ import annotations

from aitasks.services import Services
from aitasks.store import claims
from aitasks.store.models import Task

# A waiting turn, as the finishing transaction or the lookup finds it: (task id, its queue).
NextTurn = tuple[str, str]


async def publish_next_turn(services: Services, next_turn: NextTurn | None) -> None:
    """Hand the waiting turn to its queue (already found, by the transaction that ended the
    turn before it)."""
    if next_turn is not None:
        task_id, queue = next_turn
        await services.queue.publish(queue, task_id)


async def release_next_turn(services: Services, task: Task) -> None:
    """`task` has ended (finished, cancelled, given up): find its conversation's next waiting
    turn and hand it to its queue."""
    async with services.db.session() as session:
        waiting = await claims.next_waiting_turn(session, task)
    await publish_next_turn(services, waiting)
