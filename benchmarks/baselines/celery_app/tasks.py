"""The Celery side: the app on the Redis broker and the task that runs a chat turn.

    celery -A benchmarks.baselines.celery_app.tasks worker -Q mock -c 2

The database is the record (the seed's tables, reused); Celery only carries the task id, and no
result backend is configured since the result lives in PostgreSQL.
"""

from __future__ import annotations

import os
import time

from celery import Celery
from celery.signals import worker_process_init

from benchmarks.baselines.seed.shared import (
    MOCK_LATENCY_MS,
    REDIS_HOST,
    REDIS_PORT,
    Message,
    SessionLocal,
    Task,
    engine,
    mock_reply,
    now,
)

BROKER_URL = os.environ.get("CELERY_BROKER_URL", f"redis://{REDIS_HOST}:{REDIS_PORT}/0")

app = Celery("aitasks_celery_baseline", broker=BROKER_URL)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)


@worker_process_init.connect
def _fresh_pool(**_: object) -> None:
    # A forked child must not share the parent's database connections.
    engine.dispose(close=False)


@app.task(name="chat")
def run_chat(task_id: str) -> None:
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
