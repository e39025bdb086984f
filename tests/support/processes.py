"""`aitasks` as real processes: their environment, free ports, start, wait, stop; and plain
background processes (a Redis server, a proxy) that a test kills and starts again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

# Provider keys and URLs: with one set, a built-in model would call the real provider.
PROVIDER_VARIABLES = (
    "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SD_WEBUI_URL",
)  # fmt: skip

# Settings of the developer's shell that must not leak into a test's own service processes.
SERVICE_VARIABLES = (
    "DATABASE_URL", "DB_HOST", "DB_PORT", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD",
    "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "AITASKS_DATA_DIR", "AITASKS_MODELS",
    "AITASKS_REDIS_PREFIX", "AITASKS_AUTH",
    *PROVIDER_VARIABLES,
)  # fmt: skip


def service_env(**settings: str) -> dict[str, str]:
    """The environment for a service process: the test's settings and nothing inherited."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    return {**env, **settings}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """An `aitasks` subcommand running as its own process, its output kept in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path) -> None:
        self.args = args
        self.log_path = cwd / f"{'-'.join(args[:1])}-{free_port()}.log"
        self._log = self.log_path.open("ab")
        # cwd is the test's own folder, so no `.env` of the developer's is read.
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "aitasks", *args],
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.args} exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.args} never logged {text!r}:\n{self.log()}")
            time.sleep(0.05)

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


def run_cli(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aitasks", *args],
        env=dict(env),
        cwd=cwd,
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


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


class Background:
    """A plain subprocess (a Redis server, a proxy) the test starts, kills and starts again."""

    def __init__(self, args: list[str], port: int) -> None:
        self.args, self.port = args, port
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def empty_redis() -> Background:
    """A redis-server of its own on a free port, keeping nothing on disk, so that a restart comes
    back empty; not yet started."""
    port = free_port()
    command = shutil.which("redis-server") or "redis-server"
    args = [command, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return Background(args, port)
