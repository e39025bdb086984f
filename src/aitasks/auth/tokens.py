"""API keys: `ait_<id>_<secret>`. The id finds the key's row; only a SHA-256 of the whole key is
stored. (A slow password hash buys nothing here: the secret is 256 random bits, not a password.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "ait"
KEY_PATTERN = re.compile(r"ait_([0-9a-f]{16})_([A-Za-z0-9_-]{43})", re.ASCII)


@dataclass(frozen=True, slots=True)
class NewKey:
    id: str
    secret: str  # the whole key, shown to its owner once

    @property
    def hash(self) -> str:
        return hash_key(self.secret)


def new_key() -> NewKey:
    key_id = secrets.token_hex(8)
    return NewKey(key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}")


def key_id_of(token: str) -> str | None:
    """The id part of a well-formed key, else None (then no row is looked up at all)."""
    match = KEY_PATTERN.fullmatch(token)
    return match.group(1) if match else None


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(token), stored_hash)


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
