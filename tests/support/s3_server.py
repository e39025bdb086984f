"""An S3-compatible server of the suite's own: moto's standalone server (`python -m moto.server`),
which speaks the S3 protocol over HTTP, so the service's real S3 client (obstore) is what the
tests exercise. Buckets are made with boto3, which moto brings along."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from tests.support.processes import free_port

# Credentials moto accepts (any will do); the service reads them as it would AWS's.
ACCESS_KEY, SECRET_KEY, REGION = "aitasks-test", "aitasks-test-secret", "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def new_bucket(self) -> str:
        """A bucket of the caller's own, made on the server."""
        import boto3

        name = f"aitasks-test-{secrets.token_hex(4)}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        client.create_bucket(Bucket=name)
        return name


def wait_until_serving(endpoint: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the S3 server exited at once ({process.returncode})")
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"the S3 server at {endpoint} never answered"
            time.sleep(0.1)


@contextmanager
def running_s3_server(
    host: str = "127.0.0.1", port: int | None = None, prefix: Sequence[str] = ()
) -> Iterator[S3Server]:
    """moto's server on `host:port` (a free loopback port by default), run under `prefix` (an
    `ip netns exec NAME` to run it on a test host), stopped afterwards whatever happens. The
    caller must be able to reach it (from inside the namespace, for one)."""
    port = port or free_port()
    command = [*prefix, sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://{host}:{port}"
        wait_until_serving(endpoint, process, timeout=30)
        yield S3Server(endpoint)
    finally:
        process.kill()
        process.wait()
