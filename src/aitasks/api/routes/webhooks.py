"""GET /v1/webhooks/secret: the secret that verifies the caller's webhooks."""

from __future__ import annotations

from fastapi import APIRouter

from aitasks.api.auth import CallerDep
from aitasks.api.deps import SessionDep
from aitasks.api.responses import errors
from aitasks.api.schemas import WebhookSecret
from aitasks.webhooks.dispatcher import local_webhook_secret

router = APIRouter(prefix="/v1", tags=["webhooks"], responses=errors())


@router.get("/webhooks/secret", response_model=WebhookSecret)
async def read_webhook_secret(caller: CallerDep, session: SessionDep) -> WebhookSecret:
    """The `whsec_...` secret the caller's webhooks are signed with (the key's own; while auth is
    off, the service's). Verify each delivery's `webhook-signature` with it."""
    if caller.key is not None:
        return WebhookSecret(secret=caller.key.webhook_secret)
    return WebhookSecret(secret=await local_webhook_secret(session))
