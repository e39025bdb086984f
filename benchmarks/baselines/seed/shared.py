"""The seed's `shared/` package in one module: database connection, ORM models, request schemas.

Written as the seed's README describes it (sync SQLAlchemy on PostgreSQL, tables `tasks`,
`conversations`, `messages`), with the psycopg 3 driver.
`python -m benchmarks.baselines.seed.shared` is the seed's `init/init_db.py`.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import DateTime, ForeignKey, String, Text, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

DATABASE_URL = os.environ.get(
    "SEED_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/gemini"
)
REDIS_HOST = os.environ.get("REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
MOCK_LATENCY_MS = int(os.environ.get("SEED_MOCK_LATENCY_MS", "0"))

# Sized for FastAPI's 40-thread pool, so a busy gateway does not queue on the pool itself.
engine = create_engine(DATABASE_URL, pool_size=20, max_overflow=20, pool_pre_ping=True)
SessionLocal = sessionmaker(bind=engine, expire_on_commit=False)


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(100))
    prompt: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="PENDING", index=True)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    task_id: Mapped[str | None] = mapped_column(ForeignKey("tasks.id"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ChatRequest(BaseModel):
    prompt: str
    model: str
    conversation_id: str | None = None


class TaskCreated(BaseModel):
    task_id: str
    conversation_id: str
    status: str


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    conversation_id: str
    kind: str
    model: str
    status: str
    result: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


def queue_for(model: str) -> str:
    """The seed routes by keyword in the model's name to one Redis list per queue."""
    name = model.lower()
    for keyword in ("mock", "gemini", "deepseek", "sd"):
        if keyword in name:
            return f"queue:{keyword}"
    return "queue:default"


def mock_reply(prompt: str, history: list[Message]) -> str:
    return f'Mock reply to "{prompt}". I was given {len(history)} earlier messages.'


if __name__ == "__main__":
    Base.metadata.create_all(engine)
    print("database tables created")
