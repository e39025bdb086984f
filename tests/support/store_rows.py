"""Tasks written and claimed straight through the store, for the store's contract tests."""

from __future__ import annotations

from aitasks.routing import ModelTable
from aitasks.store import claims
from aitasks.store import tasks as store
from aitasks.store.database import Database
from aitasks.store.models import LOCAL_TENANT, Task
from aitasks.store.tasks import Owner

SPEC = ModelTable.load(environ={}).resolve("mock-chat")
OWNER = Owner(LOCAL_TENANT)


async def submit(db: Database, conversation_id: str | None = None, prompt: str = "hi") -> Task:
    async with db.session() as session:
        submission = await store.submit_task(
            session, owner=OWNER, spec=SPEC, prompt=prompt, conversation_id=conversation_id
        )
        return submission.task


async def claim(db: Database, task_id: str, worker: str = "w1", lease: float = 30) -> claims.Claim:
    async with db.session() as session:
        return await claims.claim_task(session, task_id, worker_id=worker, lease_seconds=lease)


async def complete(
    db: Database, task: Task, worker: str = "w1", text: str = "ok"
) -> claims.Finished | None:
    async with db.session() as session:
        return await claims.complete_task(session, task, worker_id=worker, text=text)
