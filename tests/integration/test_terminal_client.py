"""`aitasks chat` and `aitasks image` against a running gateway."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

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
