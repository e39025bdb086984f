"""The system deployed on three hosts (`netns.py`): PostgreSQL, Redis and an S3-compatible server
on host `a`, started by the test and listening on `a`'s address; a gateway and a worker on each
of `b` and `c`, each host with its own working and data folders, configured only by the
environment an operator would write.

Everything here is called from a thread on host `a` (`Network.on_a`), since that is where the
services' addresses can be reached from.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from tests.support.netns import Host, Network
from tests.support.postgres_cluster import SERVER_USER, PostgresCluster, started_cluster
from tests.support.processes import service_env
from tests.support.s3_server import S3Server, running_s3_server

PG_PORT, REDIS_PORT, S3_PORT, GATEWAY_PORT = 5432, 6379, 5000, 8000


class HostPostgres(PostgresCluster):
    """A cluster of the test's own, run on a host and listening on its address (trust from the
    test's subnet only)."""

    def __init__(self, folder: Path, host: Host) -> None:
        super().__init__(folder, PG_PORT)
        self.host = host
        self.url = f"postgresql://postgres@{host.address}:{PG_PORT}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60, check: bool = True) -> str:
        command = self.host.exec("runuser", "-u", SERVER_USER, "--", str(self.bin / tool), *args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{tool} failed ({done.returncode}): {done.stderr}\n{self.log()}")
        return done.stdout

    def init(self) -> None:
        super().init()
        subnet = self.host.address.rsplit(".", 1)[0] + ".0/24"
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '{self.host.address}'\n")
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {subnet} trust\n")


def host_postgres(host: Host) -> AbstractContextManager[HostPostgres]:
    return started_cluster(lambda folder: HostPostgres(folder, host), "aitasks-xhost-pg-")


@contextmanager
def host_redis(host: Host) -> Iterator[str]:
    """A redis-server of its own on the host's address, keeping nothing on disk."""
    command = shutil.which("redis-server") or "redis-server"
    process = subprocess.Popen(
        host.exec(command, "--bind", host.address, "--port", str(REDIS_PORT), "--save", "",
                  "--appendonly", "no", "--protected-mode", "no"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://{host.address}:{REDIS_PORT}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
                break
            except redis.RedisError:
                assert process.poll() is None, "redis-server exited at once"
                assert time.monotonic() < deadline, "redis-server never answered"
                time.sleep(0.05)
        yield url
    finally:
        process.kill()
        process.wait()


@dataclass
class Backends:
    """What host `a` runs for the others."""

    postgres: HostPostgres
    redis_url: str
    s3: S3Server


@contextmanager
def backends_on(network: Network) -> Iterator[Backends]:
    a = network.hosts["a"]
    with (
        host_postgres(a) as postgres,
        host_redis(a) as redis_url,
        running_s3_server(a.address, S3_PORT, prefix=a.exec()) as s3,
    ):
        yield Backends(postgres, redis_url, s3)


# Every service process started and not yet stopped: the test's clean-up stops them even when
# the scenario that started them hangs (a timeout fails the test from another thread).
RUNNING: set[HostProcess] = set()


def stop_all() -> None:
    for process in list(RUNNING):
        process.stop(signal.SIGKILL)


class HostProcess:
    """`aitasks ARGS` on a host, its output in a log file in the host's folder."""

    def __init__(self, host: Host, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.log_path = cwd / f"{args[0]}.log"
        self._log = self.log_path.open("ab")
        # `ip netns exec` execs the command: the pid is the service's own.
        self.popen = subprocess.Popen(
            host.exec(sys.executable, "-m", "aitasks", *args),
            env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        RUNNING.add(self)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        RUNNING.discard(self)
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if not self._log.closed:
            self._log.close()


def run_on(host: Host, args: list[str], env: dict[str, str], cwd: Path) -> str:
    """A one-off `aitasks` command on a host (as an operator runs `db upgrade`); its stdout."""
    done = subprocess.run(
        host.exec(sys.executable, "-m", "aitasks", *args),
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"aitasks {' '.join(args)}: {done.stderr}"
    return done.stdout


@dataclass
class Deployment:
    """A gateway and a worker on each of hosts b and c."""

    gateways: dict[str, str]  # host letter -> base URL
    workers: dict[str, HostProcess]
    api_key: str
    database_url: str
    processes: list[HostProcess] = field(default_factory=list)

    def client(self, host: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.Client(base_url=self.gateways[host], headers=headers, timeout=15)

    def logs(self) -> str:
        return "\n".join(f"--- {p.args} ---\n{p.log()}" for p in self.processes)


def wait_until_up(url: str, process: HostProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.popen.poll() is None, f"{process.args} exited:\n{process.log()}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{process.args} never came up:\n{process.log()}"
        time.sleep(0.1)


@contextmanager
def deployed(
    network: Network, backends: Backends, folder: Path, database: str, **settings: str
) -> Iterator[Deployment]:
    """`aitasks db upgrade` and a key made on host b, then a gateway and a worker on each of b
    and c (c's worker takes no image queue, so every image is made on b). `settings` are added
    to every process's environment; each host has its own working and data folders."""
    a, b, c = (network.hosts[x] for x in "abc")
    database_url = f"postgresql://postgres@{a.address}:{PG_PORT}/{database}"
    env = service_env(
        DATABASE_URL=database_url,
        REDIS_URL=backends.redis_url,
        AITASKS_AUTH="on",
        AITASKS_LEASE_SECONDS="3",
        AITASKS_RECONCILE_SECONDS="2",
        AITASKS_MOCK_LATENCY_MS="20",
        AITASKS_LOG_FORMAT="text",
        **settings,
    )
    folders = {x: folder / x for x in "bc"}
    envs = {}
    for x, path in folders.items():
        (path / "data").mkdir(parents=True)
        envs[x] = {**env, "AITASKS_DATA_DIR": str(path / "data")}
    run_on(b, ["db", "upgrade"], envs["b"], folders["b"])
    made = run_on(b, ["keys", "create", "--name", "operator"], envs["b"], folders["b"])
    api_key = made.strip().splitlines()[-1]

    with ExitStack() as stack:
        processes: list[HostProcess] = []

        def start(host: Host, x: str, args: list[str]) -> HostProcess:
            process = HostProcess(host, args, envs[x], folders[x])
            processes.append(process)
            stack.callback(process.stop)
            return process

        gateways = {x: f"http://{h.address}:{GATEWAY_PORT}" for x, h in (("b", b), ("c", c))}
        apis = {
            x: start(h, x, ["api", "--host", h.address, "--port", str(GATEWAY_PORT)])
            for x, h in (("b", b), ("c", c))
        }
        workers = {
            "b": start(b, "b", ["worker", "--concurrency", "2"]),
            "c": start(
                c, "c", ["worker", "--concurrency", "8", "--queues", "gemini,deepseek,mock"]
            ),
        }
        for x, url in gateways.items():
            wait_until_up(url, apis[x])
        deployment = Deployment(gateways, workers, api_key, database_url, processes)
        try:
            yield deployment
        except BaseException:
            print(deployment.logs())  # shown by pytest when the test fails
            raise
