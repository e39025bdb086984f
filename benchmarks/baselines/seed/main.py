"""The seed's `api-gateway/main.py`: FastAPI with sync SQLAlchemy, LPUSH of the task id to Redis.

uvicorn benchmarks.baselines.seed.main:app
"""

from __future__ import annotations

import redis
from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy.orm import Session

from benchmarks.baselines.seed.shared import (
    REDIS_HOST,
    REDIS_PORT,
    ChatRequest,
    Conversation,
    Message,
    SessionLocal,
    Task,
    TaskCreated,
    TaskOut,
    queue_for,
)

app = FastAPI(title="AI Task System (seed)")
redis_client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)


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
    redis_client.lpush(queue_for(request.model), task.id)
    return TaskCreated(task_id=task.id, conversation_id=conversation.id, status=task.status)


@app.get("/v1/tasks/{task_id}")
def get_task(task_id: str, db: Session = Depends(get_db)) -> dict[str, object]:
    task = db.get(Task, task_id)
    if task is None:
        raise HTTPException(404, "task not found")
    out = TaskOut.model_validate(task).model_dump(mode="json")
    out["task_id"] = out.pop("id")
    return out


@app.get("/v1/conversations/{conversation_id}/history")
def history(conversation_id: str, db: Session = Depends(get_db)) -> dict[str, object]:
    messages = (
        db.query(Message)
        .filter(Message.conversation_id == conversation_id)
        .order_by(Message.created_at)
        .all()
    )
    return {
        "conversation_id": conversation_id,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
    }
