"""API keys and the service's shared secrets. Their SQL lives only here."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aitasks.auth.caller import KeyInfo
from aitasks.auth.tokens import matches, new_key, new_webhook_secret
from aitasks.errors import Conflict, NotFound
from aitasks.store.models import ApiKey, ServiceSecret, utcnow


def key_info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        webhook_secret=row.webhook_secret,
        rpm=row.rpm,
        max_inflight=row.max_inflight,
        daily_tokens=row.daily_tokens,
        weight=row.weight or 1,
        max_priority=row.max_priority,
        expires_after=row.expires_after,
    )


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    tenant: str | None = None,
    rpm: int | None = None,
    max_inflight: int | None = None,
    daily_tokens: int | None = None,
    weight: int | None = None,
    max_priority: str | None = None,
    expires_after: float | None = None,
) -> tuple[ApiKey, str]:
    """A new key for `tenant` (by default a tenant of the key's own name), and its secret."""
    made = new_key()
    row = ApiKey(
        id=made.id,
        name=name,
        tenant=tenant or name,
        secret_hash=made.hash,
        webhook_secret=new_webhook_secret(),
        rpm=rpm,
        max_inflight=max_inflight,
        daily_tokens=daily_tokens,
        weight=weight,
        max_priority=max_priority,
        expires_after=expires_after,
        created_at=utcnow(),
    )
    try:
        async with session.begin():
            session.add(row)
    except IntegrityError:
        raise Conflict(f"a key named {name!r} exists already", param="name") from None
    return row, made.secret


async def list_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return (await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all()


async def revoke_key(session: AsyncSession, name: str) -> ApiKey:
    """Revoke the key named `name` (or with that id); gateways stop honouring it within their
    cache's lifetime (AITASKS_KEY_CACHE_SECONDS)."""
    async with session.begin():
        row = (
            await session.scalars(select(ApiKey).where((ApiKey.name == name) | (ApiKey.id == name)))
        ).first()
        if row is None:
            raise NotFound(f"no key named {name!r}", param="name")
        if row.revoked_at is None:
            await session.execute(
                update(ApiKey).where(ApiKey.id == row.id).values(revoked_at=utcnow())
            )
            await session.refresh(row)
    return row


async def find_key(session: AsyncSession, key_id: str, token: str) -> KeyInfo | None:
    """The live key `token` is, or None: unknown id, wrong secret and revoked look the same."""
    row = await session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None or not matches(token, row.secret_hash):
        return None
    return key_info(row)


async def key_by_id(session: AsyncSession, key_id: str) -> KeyInfo | None:
    row = await session.get(ApiKey, key_id)
    return key_info(row) if row is not None else None


async def service_secret(session: AsyncSession, name: str, *, make: str) -> str:
    """The shared secret `name`, stored as `make` by whichever process asks first; every other
    process then reads that one."""
    async with session.begin():
        stored = await session.get(ServiceSecret, name)
        if stored is not None:
            return stored.value
    try:
        async with session.begin():
            session.add(ServiceSecret(name=name, value=make))
    except IntegrityError:
        # Another process made it first: use theirs.
        async with session.begin():
            stored = await session.get(ServiceSecret, name, populate_existing=True)
            if stored is not None:
                return stored.value
        raise
    return make
