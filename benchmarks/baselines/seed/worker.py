"""The seed's `workers/gemini/mock_worker.py`: BRPOP the queues, mark RUNNING, call the mock, write
SUCCESS with the result and the assistant's message.

    python -m benchmarks.baselines.seed.worker
"""

from __future__ import annotations

import time

import redis

from benchmarks.baselines.seed.shared import (
    MOCK_LATENCY_MS,
    REDIS_HOST,
    REDIS_PORT,
    Message,
    SessionLocal,
    Task,
    mock_reply,
    now,
)

QUEUES = ["queue:mock", "queue:gemini", "queue:deepseek", "queue:sd", "queue:default"]


def process(task_id: str) -> None:
    with SessionLocal() as db:
        task = db.get(Task, task_id)
        if task is None or task.status != "PENDING":
            return
        task.status, task.updated_at = "RUNNING", now()
        db.commit()
        history = (
            db.query(Message)
            .filter(Message.conversation_id == task.conversation_id)
            .order_by(Message.created_at)
            .all()
        )
        time.sleep(MOCK_LATENCY_MS / 1000)  # the "model call"
        task.result = mock_reply(task.prompt, history)
        task.status, task.updated_at = "SUCCESS", now()
        db.add(Message(conversation_id=task.conversation_id, task_id=task.id, role="assistant",
                       content=task.result))  # fmt: skip
        db.commit()


def main() -> None:
    r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)
    print(f"mock worker listening on {QUEUES}", flush=True)
    while True:
        item = r.brpop(QUEUES, timeout=1)  # under redis-py's 5 s socket timeout
        if item is not None:
            process(item[1])


if __name__ == "__main__":
    main()
