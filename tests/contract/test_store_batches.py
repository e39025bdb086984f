"""A batch's bulk write, on SQLite and on PostgreSQL: thousands of lines in a few statements and one
transaction, each line its own conversation's first turn or an existing one's next turn in line
order; its lines read back a page at a time, in order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from aitasks.priority import Lane, Placement
from aitasks.store import batches as store
from aitasks.store.database import Database
from aitasks.store.models import Message, Task, new_id
from tests.support.store_rows import OWNER, SPEC, submit


def batch_row(total: int) -> dict[str, Any]:
    return {"id": new_id(), "tenant": OWNER.tenant, "surface": "seed", "endpoint": "/v1/batches",
            "status": "in_progress", "completion_window": "24h", "total": total}  # fmt: skip


async def test_thousands_of_lines_in_a_few_statements(db: Database) -> None:
    earlier = await submit(db)
    lines = [store.NewLine(n, SPEC, f"line {n}", custom_id=f"c{n}") for n in range(2500)]
    lines[10] = store.NewLine(10, SPEC, "again", conversation_id=earlier.conversation_id)
    lines[20] = store.NewLine(20, SPEC, "and again", conversation_id=earlier.conversation_id)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        row = batch_row(len(lines))
        async with db.session() as session:
            written = await store.insert_batch(
                session, row, lines, owner=OWNER, placement=Placement(Lane.BATCH, OWNER.tenant),
                expires_at=None,
            )  # fmt: skip
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    writes = [s for s in statements if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    # The batch, one turn-taking update, then conversations, tasks and messages in pages of a
    # thousand rows at most.
    assert len(writes) <= 2 + 3 * 3, writes
    assert len(written) == 2500 and len({task_id for task_id, _ in written}) == 2500
    async with db.read_connection() as connection:
        first = await store.lines(connection, row["id"], -1, 1000)
        rest = await store.lines(connection, row["id"], first[-1].batch_index or 0, 5000)
        counts = await store.counts(connection, row["id"])
    tasks = first + rest
    assert [t.batch_index for t in tasks] == list(range(2500))
    assert [t.custom_id for t in tasks[:3]] == ["c0", "c1", "c2"]
    assert all(t.priority == "batch" for t in tasks) and counts == {"PENDING": 2500}
    assert (tasks[10].conversation_id, tasks[10].turn) == (earlier.conversation_id, 2)
    assert (tasks[20].conversation_id, tasks[20].turn) == (earlier.conversation_id, 3)
    async with db.session() as session:
        prompts = await session.scalars(
            select(Message.content)
            .where(Message.conversation_id == earlier.conversation_id)
            .order_by(Message.turn)
        )
        assert list(prompts) == ["hi", "again", "and again"]
        assert await session.get(Task, written[0][0]) is not None
