"""Links to generated files. While auth is on, a file link carries an expiry and an HMAC of the
file id and that expiry, so an `<img>` tag or a webhook receiver can fetch it without a key,
and only until it expires."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass(frozen=True, slots=True)
class FileSigner:
    secret: bytes
    ttl_seconds: int

    def _signature(self, file_id: str, expires: int) -> str:
        message = f"{file_id}.{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def query(self, file_id: str) -> str:
        # Rounded up to the hour, so a page that lists a file twice gets one URL (caches agree).
        expires = (int(time.time()) + self.ttl_seconds) // 3600 * 3600 + 3600
        return urlencode({"expires": expires, "signature": self._signature(file_id, expires)})

    def verify(self, file_id: str, expires: int, signature: str) -> bool:
        if expires < time.time():
            return False
        # As bytes: compare_digest refuses a str with characters outside ASCII (a TypeError, so a
        # 500) and the signature is whatever the caller put in the query.
        given = signature.encode("utf-8", "surrogatepass")
        return hmac.compare_digest(self._signature(file_id, expires).encode(), given)


@dataclass(frozen=True, slots=True)
class Links:
    """How this answer's links are written: the site's root as the caller reached it, the signer
    when file links must be signed, and the file store's own links when it serves the files
    (`AITASKS_FILE_LINKS=store`: pre-signed URLs, good for `AITASKS_FILE_URL_TTL_SECONDS`)."""

    base: str
    signer: FileSigner | None = None
    store: Callable[[str], str] | None = None

    def file(self, file_id: str) -> str:
        if self.store is not None:
            return self.store(file_id)
        url = f"{self.base.rstrip('/')}/v1/files/{file_id}"
        return f"{url}?{self.signer.query(file_id)}" if self.signer else url
