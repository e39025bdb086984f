"""Helpers shared by the tests: running `aitasks` as real processes, and polling the API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"SUCCESS", "FAILED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """An `aitasks` subcommand running as its own process, its output kept in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "aitasks", *args],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def run_cli(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aitasks", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_until_up(base_url: str, process: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.args} exited early:\n{process.log()}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{process.args} did not come up:\n{process.log()}")


def wait_for_tasks(
    client: httpx.Client, task_ids: list[str], timeout: float = 60
) -> dict[str, dict[str, Any]]:
    """Poll each task, as the seed's clients do, until all have finished."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for task_id in task_ids:
            if task_id in done:
                continue
            task = client.get(f"/v1/tasks/{task_id}").json()
            if task["status"] in TERMINAL:
                done[task_id] = task
        if len(done) == len(task_ids):
            return done
        time.sleep(0.05)
    missing = sorted(set(task_ids) - set(done))
    raise AssertionError(f"{len(missing)} of {len(task_ids)} tasks unfinished, e.g. {missing[:3]}")
