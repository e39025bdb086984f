"""`aitasks chat` and `aitasks image` against a running gateway."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from PIL import Image

from aitasks.providers.base import ChatMessage
from aitasks.providers.mock import mock_reply
from tests.support.processes import run_cli, service_env


def test_chat_streams_a_reply_and_names_the_conversation(server: str, tmp_path: Path) -> None:
    first = run_cli(["chat", "Hello there", "--model", "mock-chat", "--url", server],
                    service_env(), tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == mock_reply([ChatMessage("user", "Hello there")])
    conversation = first.stderr.strip().rsplit("conversation: ", 1)[1]
    second = run_cli(
        ["chat", "And again", "-m", "mock-chat", "-c", conversation],
        service_env(AITASKS_URL=server),
        tmp_path,
    )
    assert "1 earlier turn " in second.stdout


def test_an_interactive_session_keeps_one_conversation(server: str, tmp_path: Path) -> None:
    session = subprocess.run(
        [sys.executable, "-m", "aitasks", "chat", "--model", "mock-chat", "--url", server],
        input="one\ntwo\n\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **service_env()},
        cwd=tmp_path,
        check=False,
    )
    assert session.returncode == 0, session.stderr
    replies = [line for line in session.stdout.splitlines() if "Mock reply" in line]
    assert len(replies) == 2 and "1 earlier turn " in replies[1]


def _piped(args: list[str], stdin: str | None = None, *, merged: bool) -> list[str]:
    """The lines `aitasks ARGS` writes to a pipe, as a user's shell sees them: stdout block-
    buffered (no PYTHONUNBUFFERED, which the test runner may set), and stderr either sent to
    the same pipe (`2>&1 | cat`, merged) or kept out of it (`| cat`)."""
    env = {k: v for k, v in {**os.environ, **service_env()}.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [sys.executable, "-m", "aitasks", *args],
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.DEVNULL,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout.splitlines()


def test_a_piped_chat_keeps_each_reply_on_a_line_of_its_own(server: str) -> None:
    """`aitasks chat … 2>&1 | cat` once ran the reply into `conversation: …` (the reply's last
    newline sat unflushed in stdout's buffer), and a piped session's prompts (`you> `) went
    into stdout in front of each reply."""
    one = _piped(["chat", "Hello there", "-m", "mock-chat", "--url", server], merged=True)
    assert one[0] == mock_reply([ChatMessage("user", "Hello there")])
    assert one[1].startswith("conversation: ") and len(one) == 2, one

    replies = _piped(["chat", "-m", "mock-chat", "--url", server], "one\ntwo\n\n", merged=False)
    first = mock_reply([ChatMessage("user", "one")])
    second = mock_reply(
        [ChatMessage("user", "one"), ChatMessage("assistant", first), ChatMessage("user", "two")]
    )
    assert replies == [first, second]


def test_image_saves_a_png(server: str, tmp_path: Path) -> None:
    made = run_cli(["image", "a lighthouse", "-o", "out.png", "--url", server],
                   service_env(), tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "out.png"
    assert Image.open(io.BytesIO((tmp_path / "out.png").read_bytes())).format == "PNG"


def test_errors_are_said_plainly(server: str, tmp_path: Path) -> None:
    unknown = run_cli(["chat", "hi", "--model", "gpt-9", "--url", server], service_env(), tmp_path)
    assert unknown.returncode == 1 and "unknown model 'gpt-9'" in unknown.stderr
    down = run_cli(["chat", "hi", "--url", "http://127.0.0.1:9"], service_env(), tmp_path)
    assert down.returncode == 1 and "cannot reach" in down.stderr


def test_status_shows_queues_workers_and_failures(server: str, tmp_path: Path) -> None:
    failing = run_cli(
        ["chat", "x [fail:fatal]", "-m", "mock-chat", "--url", server], service_env(), tmp_path
    )
    assert failing.returncode == 1 and "FAILED" in failing.stderr
    shown = run_cli(["status", "--json", "--url", server], service_env(), tmp_path)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert {q["name"] for q in status["queues"]} >= {"mock", "gemini", "sd"}
    (worker, *_) = status["workers"]
    assert worker["in_flight"] >= 0 and "mock" in worker["queues"]
    assert status["recent_failures"][0]["error"]["type"] == "provider_bad_request"
    table = run_cli(["status", "--url", server], service_env(), tmp_path)
    assert table.returncode == 0 and "Queues" in table.stdout and "Workers alive" in table.stdout


def test_status_watches_a_batch_to_its_end(server: str, tmp_path: Path) -> None:
    requests = [{"prompt": f"line {n}", "model": "mock-chat"} for n in range(12)]
    accepted = httpx.post(f"{server}/v1/batches", json=requests, timeout=10)
    assert accepted.status_code == 202, accepted.text
    batch_id = accepted.json()["id"]
    shown = run_cli(["status", "--json", "--url", server], service_env(), tmp_path)
    status = json.loads(shown.stdout)
    assert {"queue", "lane", "depth", "oldest_waiting_seconds"} <= set(status["lanes"][0])
    assert [row["lane"] for row in status["mine"]] == ["interactive", "default", "batch"]
    watched = run_cli(["status", "--batch", batch_id, "--watch", "--url", server],
                      service_env(), tmp_path)  # fmt: skip
    assert watched.returncode == 0, watched.stderr
    assert f"batch {batch_id}" in watched.stdout and "completed  12/12 (100%)" in watched.stdout
    once = run_cli(["status", "--batch", batch_id, "--json", "--url", server], service_env(),
                   tmp_path)  # fmt: skip
    assert json.loads(once.stdout)["counts"]["succeeded"] == 12
    missing = run_cli(["status", "--batch", "0" * 32, "--url", server], service_env(), tmp_path)
    assert missing.returncode == 1 and "not found" in missing.stderr
