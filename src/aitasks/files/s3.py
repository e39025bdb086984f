"""`s3://bucket/prefix`: files in any S3-compatible object store (AWS S3, MinIO, Cloudflare R2,
GCS in interoperability mode), through `obstore`.

obstore is the Python face of the Rust `object_store` crate that Apache Arrow, DataFusion and
Delta Lake use: async, streaming reads, pre-signed URLs, one small wheel with no botocore (which
`aiobotocore` pins to a narrow range of versions). It is imported only when a store URL names
S3 (STYLE.md, point 15). Endpoint, region and credentials come from the standard AWS variables
(`AWS_ENDPOINT_URL`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity and container credentials), which
obstore reads itself; an `http://` endpoint (MinIO on a closed network, a test server) is allowed
because the operator wrote it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aitasks.errors import ConfigError, FileStoreUnavailable
from aitasks.files.base import CHUNK_BYTES, FileStorage

if TYPE_CHECKING:
    from obstore.store import S3Store

# The variables, in the order AWS's own SDKs read them, that may name an endpoint.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
# A request that has not answered by then is retried, and the call given up after a few tries,
# so a store that is down fails a write in seconds (the worker retries the attempt) rather than
# in obstore's default three minutes.
CLIENT_OPTIONS: dict[str, Any] = {"connect_timeout": "5s", "timeout": "30s"}
RETRY: dict[str, Any] = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=20),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2)},
}
# How long the start-up check may take before the store counts as unreachable.
CHECK_SECONDS = 15.0
# What the start-up check writes: needs only the PutObject right the service needs anyway.
CHECK_KEY = ".aitasks-store-check"


def parse_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ConfigError(f"AITASKS_FILE_STORE={url!r} names no bucket: use s3://bucket/prefix")
    return bucket, prefix.strip("/")


def _one_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class S3FileStorage(FileStorage):
    name = "s3"

    def __init__(self, url: str) -> None:
        from obstore.store import S3Store

        self.url = url
        self.bucket, prefix = parse_url(url)
        endpoint = next((os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)), "")
        options = {**CLIENT_OPTIONS, "allow_http": endpoint.startswith("http://")}
        self.store: S3Store = S3Store(
            self.bucket,
            prefix=prefix or None,
            client_options=options,  # type: ignore[arg-type]
            retry_config=RETRY,  # type: ignore[arg-type]
        )

    def _unavailable(self, exc: BaseException) -> FileStoreUnavailable:
        return FileStoreUnavailable(f"the file store {self.url} failed: {_one_line(exc)}")

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        import obstore

        try:
            await obstore.put_async(
                self.store, key, data, attributes={"Content-Type": content_type}
            )
        except Exception as exc:
            raise self._unavailable(exc) from exc

    async def open(self, key: str) -> AsyncIterator[bytes]:
        import obstore

        try:
            result = await obstore.get_async(self.store, key)
        except FileNotFoundError:
            raise FileNotFoundError(key) from None
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return self._pieces(result.stream(min_chunk_size=CHUNK_BYTES))

    async def _pieces(self, stream: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        try:
            async for piece in stream:
                yield bytes(piece)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    async def delete(self, keys: Sequence[str]) -> None:
        import obstore

        if not keys:
            return
        try:
            await obstore.delete_async(self.store, list(keys))
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._unavailable(exc) from exc

    async def check(self) -> None:
        """Write a marker object: proves the endpoint answers, the bucket exists and the
        credentials may write, which is what the service needs."""
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                await self.put(CHECK_KEY, b"aitasks\n", content_type="text/plain")
        except (FileStoreUnavailable, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, FileStoreUnavailable) else "no answer"
            raise ConfigError(
                f"AITASKS_FILE_STORE={self.url}: bucket {self.bucket!r} cannot be used: {reason}"
            ) from None

    def link(self, key: str, ttl_seconds: int) -> str | None:
        import obstore

        return obstore.sign(self.store, "GET", key, timedelta(seconds=ttl_seconds))
