"""The Conversations API's request bodies. Items stay JSON objects here: each is checked, with
a message naming it, by `lifecycle/conversation_items.plan_turns`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] | None = Field(
        default=None, description="Up to 20 items: its first turns."
    )
    metadata: dict[str, str] | None = Field(
        default=None, description="Up to 16 pairs: keys up to 64 characters, values up to 512."
    )


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, str] = Field(description="The conversation's metadata, replaced whole.")


class ItemsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(description="1 to 20 items: the next turns.")
