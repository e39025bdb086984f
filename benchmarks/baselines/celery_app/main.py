"""The same HTTP contract as the seed, the way a Celery user builds it: FastAPI writes the task row,
then `run_chat.apply_async` hands the id to Celery on the model's queue; GET reads PostgreSQL.

    uvicorn benchmarks.baselines.celery_app.main:app
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy.orm import Session

from benchmarks.baselines.celery_app.tasks import run_chat
from benchmarks.baselines.seed.shared import (
    ChatRequest,
    Conversation,
    Message,
    SessionLocal,
    Task,
    TaskCreated,
    TaskOut,
    queue_for,
)

app = FastAPI(title="AI Task System (Celery)")


def get_db():  # type: ignore[no-untyped-def]
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/chat/completions", status_code=202, response_model=TaskCreated)
def create_chat(request: ChatRequest, db: Session = Depends(get_db)) -> TaskCreated:
    if request.conversation_id:
        conversation = db.get(Conversation, request.conversation_id)
        if conversation is None:
            raise HTTPException(404, "conversation not found")
    else:
        conversation = Conversation(title=request.prompt[:50])
        db.add(conversation)
        db.flush()
    task = Task(
        conversation_id=conversation.id, kind="chat", model=request.model, prompt=request.prompt
    )
    db.add(task)
    db.flush()
    db.add(Message(conversation_id=conversation.id, task_id=task.id, role="user",
                   content=request.prompt))  # fmt: skip
    db.commit()
    # Celery queue names without the seed's "queue:" prefix: "mock", "gemini", ...
    run_chat.apply_async((task.id,), queue=queue_for(request.model).removeprefix("queue:"))
    return TaskCreated(task_id=task.id, conversation_id=conversation.id, status=task.status)


@app.get("/v1/tasks/{task_id}")
def get_task(task_id: str, db: Session = Depends(get_db)) -> dict[str, object]:
    task = db.get(Task, task_id)
    if task is None:
        raise HTTPException(404, "task not found")
    out = TaskOut.model_validate(task).model_dump(mode="json")
    out["task_id"] = out.pop("id")
    return out
