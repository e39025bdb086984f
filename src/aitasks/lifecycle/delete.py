"""Deleting a conversation: its rows go in one transaction, then its running tasks stop."""

from __future__ import annotations

import logging

from aitasks.auth.caller import Caller
from aitasks.errors import RedisUnavailable, ServiceUnavailable
from aitasks.lifecycle.admission import unadmit
from aitasks.lifecycle.stop import stop_task
from aitasks.services import Services
from aitasks.store import conversations as store

log = logging.getLogger(__name__)

# What a deleted task's stream says it ended as.
DELETED = "DELETED"


async def delete_conversation(services: Services, caller: Caller, conversation_id: str) -> None:
    """Delete the caller's conversation with its messages, tasks and files.

    The rows go first, in one transaction; then its unfinished tasks' workers are told to stop
    (a worker that misses it finds its task gone when it writes), those tasks stop counting
    against the caller's key's tasks in flight, and the files' bytes leave the storage.
    """
    async with services.db.session() as session:
        deleted = await store.delete_conversation(session, conversation_id, tenant=caller.tenant)
    for task_id in deleted.unfinished:
        try:
            await stop_task(services, task_id, DELETED)
        except RedisUnavailable as exc:
            log.warning("task %s: cancel not announced: %s", task_id, exc.message)
    # They may have been running: their reserved tokens stay counted, the best guess.
    await unadmit(services, caller, deleted.unfinished, refund=False)
    # From whichever store holds them; a store that fails now leaves bytes no row names (logged),
    # never a row naming bytes that are gone.
    try:
        await services.storage.delete(deleted.file_keys)
    except ServiceUnavailable as exc:
        log.warning("conversation %s: files not removed from the store: %s", conversation_id, exc)
