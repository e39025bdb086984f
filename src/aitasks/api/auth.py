"""Who is calling: the `Authorization: Bearer <key>` of every API request, checked against the
stored keys (cached briefly), and counted against the key's requests per minute."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aitasks.auth.caller import Caller, KeyInfo
from aitasks.auth.tokens import hash_key, key_id_of
from aitasks.errors import Unauthorized
from aitasks.services import Services
from aitasks.store import api_keys as store

# Enough for every key of a large deployment; unknown keys a scanner tries push out the oldest.
KEY_CACHE_SIZE = 10_000


class KeyCache:
    """Keys by the hash of the presented token: the key, or None for a token that is no key.
    An entry is trusted for `seconds` (AITASKS_KEY_CACHE_SECONDS), so a busy client costs one
    key lookup per that time, not one per request, and a revoked key stops within it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: OrderedDict[str, tuple[float, KeyInfo | None]] = OrderedDict()

    def get(self, token_hash: str) -> tuple[bool, KeyInfo | None]:
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, token_hash: str, key: KeyInfo | None) -> None:
        self._entries[token_hash] = (time.monotonic() + self.seconds, key)
        self._entries.move_to_end(token_hash)
        while len(self._entries) > KEY_CACHE_SIZE:
            self._entries.popitem(last=False)


# Declares the scheme in the OpenAPI schema; the header itself is read by `bearer_token`.
bearer_scheme = HTTPBearer(
    auto_error=False, description="An API key from `aitasks keys create` (while auth is on)."
)
BearerDeclared = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authenticate(request: Request, _declared: BearerDeclared = None) -> Caller:
    """The caller of this request; 401 without a valid key while auth is on."""
    # The services from the app, not from ServicesDep: each dependency edge costs every request.
    services: Services = request.app.state.services
    if not services.settings.auth_enabled:
        return Caller()
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    cache: KeyCache = request.app.state.key_cache
    token_hash = hash_key(token)
    known, key = cache.get(token_hash)
    if not known:
        key_id = key_id_of(token)
        if key_id is not None:
            async with services.db.session() as session:
                key = await store.find_key(session, key_id, token)
        cache.put(token_hash, key)
    if key is None:
        raise Unauthorized("the API key is not valid")
    await services.limits.take_request(key)
    return Caller(tenant=key.tenant, key=key)


CallerDep = Annotated[Caller, Depends(authenticate)]
