"""Bad configuration stops a service at start-up with one line on stderr naming the setting, and
a non-zero exit: an unknown file store, a bucket that cannot be used, a retention of 0 days,
store links from a store that cannot sign them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import run_cli, service_env
from tests.support.s3_server import S3Server


def refused(args: list[str], folder: Path, **settings: str) -> str:
    """Run `aitasks ARGS`; assert it stopped at once with one line on stderr; return it."""
    done = run_cli(args, service_env(AITASKS_DATA_DIR=str(folder / "data"), **settings), folder)
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_an_unknown_file_store(tmp_path: Path) -> None:
    line = refused(["api"], tmp_path, AITASKS_FILE_STORE="ftp://files.example/x")
    assert "AITASKS_FILE_STORE='ftp://files.example/x' is not a file store" in line


def test_a_bucket_that_cannot_be_used(tmp_path: Path, s3_server: S3Server) -> None:
    line = refused(
        ["worker"], tmp_path, AITASKS_FILE_STORE="s3://no-such-bucket/x", **s3_server.env()
    )
    assert (
        "AITASKS_FILE_STORE=s3://no-such-bucket/x: bucket 'no-such-bucket' cannot be used" in line
    )


def test_an_unreachable_object_store(tmp_path: Path, s3_server: S3Server) -> None:
    nobody = {**s3_server.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # nothing listens
    line = refused(["up"], tmp_path, AITASKS_FILE_STORE="s3://some-bucket/x", **nobody)
    assert "AITASKS_FILE_STORE=s3://some-bucket/x" in line and "cannot be used" in line


@pytest.mark.parametrize(
    "setting",
    [
        "AITASKS_TASK_RETENTION_DAYS",
        "AITASKS_FILE_RETENTION_DAYS",
        "AITASKS_WEBHOOK_RETENTION_DAYS",
        "AITASKS_CONVERSATION_RETENTION_DAYS",
    ],
)
def test_a_retention_of_zero_days(tmp_path: Path, setting: str) -> None:
    line = refused(["worker"], tmp_path, **{setting: "0"})
    assert line.startswith(f"configuration error: {setting}: ")
    assert "at least 1, or off" in line


def test_store_links_from_a_store_that_cannot_sign_them(tmp_path: Path) -> None:
    line = refused(["api"], tmp_path, AITASKS_FILE_STORE="local", AITASKS_FILE_LINKS="store")
    assert "AITASKS_FILE_LINKS=store needs a store that signs URLs" in line
