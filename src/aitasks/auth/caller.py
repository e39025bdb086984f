"""Who a request acts for: its tenant, and the key it came with. One place for both, so every
layer names the same types."""

from __future__ import annotations

from dataclasses import dataclass

# The tenant of everything done while auth is off (the embedded default on a laptop).
LOCAL_TENANT = "local"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a request needs of its key: whose it is, its limits, and its webhook secret."""

    id: str
    name: str
    tenant: str
    webhook_secret: str
    rpm: int | None = None
    max_inflight: int | None = None
    daily_tokens: int | None = None
    # Its tenant's weight in a lane's fair share, the highest lane it may use (None: any) and
    # the deadline in seconds its tasks get when they name none (see `aitasks.priority`).
    weight: int = 1
    max_priority: str | None = None
    expires_after: float | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """The tenant a request acts for, and the key it came with (None while auth is off)."""

    tenant: str = LOCAL_TENANT
    key: KeyInfo | None = None
