"""A deployment with auth on, as an operator runs one: two gateways and a worker as real processes
on real PostgreSQL and Redis, keys made with `aitasks keys create`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.processes import Process, free_port, run_cli, wait_until_up
from tests.support.services import upgraded_stack

# A provider key the service holds: it must never show in an answer, a log line or a metric.
PROVIDER_SECRET = "sk-test-provider-secret-0f1e2d3c"
# A model whose provider cannot be reached (nothing listens on port 9), so its calls fail.
MODELS = """
[models."unreachable-gpt"]
kind = "chat"
provider = "openai"
queue = "chat"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "OPENAI_API_KEY"
max_attempts = 1
timeout_s = 5
"""


@dataclass
class Key:
    name: str
    secret: str
    webhook_secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@dataclass
class Deployment:
    gateways: list[str]
    database_url: str
    env: dict[str, str]
    folder: Path
    processes: list[Process] = field(default_factory=list)

    def create_key(self, name: str, *options: str) -> Key:
        made = run_cli(["keys", "create", "--name", name, *options], self.env, self.folder)
        assert made.returncode == 0, made.stderr
        lines = made.stdout.strip().splitlines()
        webhook_secret = next(
            line.split(": ", 1)[1] for line in lines if line.startswith("webhook signing secret")
        )
        return Key(name, lines[-1], webhook_secret)

    def client(self, key: Key | None, gateway: int = 0) -> httpx.Client:
        headers = key.headers if key else {}
        return httpx.Client(base_url=self.gateways[gateway], headers=headers, timeout=10)

    def logs(self) -> str:
        return "\n".join(p.log() for p in self.processes)


@contextmanager
def secured_deployment(folder: Path) -> Iterator[Deployment]:
    """Two gateways and a worker with auth on, webhooks to loopback allowed and retried quickly,
    logs at DEBUG, and a provider secret in their environment."""
    (folder / "models.toml").write_text(MODELS)
    with upgraded_stack(
        folder,
        AITASKS_MOCK_LATENCY_MS="10",
        AITASKS_AUTH="on",
        AITASKS_KEY_CACHE_SECONDS="0.5",
        AITASKS_WEBHOOK_ALLOW_PRIVATE="true",
        AITASKS_WEBHOOK_RETRY_BASE_SECONDS="0.2",
        AITASKS_WEBHOOK_MAX_ATTEMPTS="4",
        AITASKS_LOG_LEVEL="DEBUG",
        AITASKS_MODELS=str(folder / "models.toml"),
        OPENAI_API_KEY=PROVIDER_SECRET,
    ) as env:
        database_url = env["DATABASE_URL"]
        ports = [free_port(), free_port()]
        gateways = [f"http://127.0.0.1:{port}" for port in ports]
        deployment = Deployment(gateways, database_url, env, folder)
        deployment.processes = [
            *(Process(["api", "--port", str(port)], env, folder) for port in ports),
            Process(["worker", "--concurrency", "16"], env, folder),
        ]
        try:
            for url, process in zip(gateways, deployment.processes, strict=False):
                wait_until_up(url, process)
            yield deployment
        finally:
            for process in deployment.processes:
                process.stop()
