"""Shared by the load benchmarks: start a system (aitasks, the seed baseline, the Celery baseline)
as real processes on a private Redis and a fresh PostgreSQL database, drive it over HTTP, sum up.

Every system runs with its logs at WARNING (no access log), so no one pays for logging the others
skip. The client is the same for all three: asyncio + aiohttp on uvloop, in this process. (aiohttp,
not httpx: the client shares the 2 cores with the system it measures, and httpx spent 1.4 ms of
CPU per request here against aiohttp's 0.16 ms.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psycopg
import redis

from benchmarks.pg_cpu import DatabaseCpu
from tests.support.flows import TERMINAL
from tests.support.processes import (
    Process,
    empty_redis,
    free_port,
    run_cli,
    service_env,
    wait_until_up,
)
from tests.support.services import fresh_postgres_database

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("aitasks", "seed", "celery")
MODEL = "mock-chat"  # aitasks' built-in mock model; the baselines route "mock" to their mock queue


# ---------------------------------------------------------------- processes


class Command:
    """Any command (uvicorn, celery, a baseline worker) as a process with its output in a log."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: Path, name: str) -> None:
        self.args = argv
        self.log_path = cwd / f"{name}-{free_port()}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


Proc = Process | Command


@dataclass
class System:
    name: str
    base_urls: list[str]
    database_url: str  # plain postgresql://, for the benchmark's own queries
    redis_url: str
    folder: Path
    redis_pid: int
    env: dict[str, str] = field(default_factory=dict)
    gateways: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)
    # Its database's share of the shared PostgreSQL's CPU (`benchmarks.pg_cpu`), from `running`.
    postgres_cpu: DatabaseCpu | None = None


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[str, int]]:
    """A redis-server of our own, without persistence; yields its URL and process id."""
    server = empty_redis()
    server.start()
    assert server.popen is not None
    try:
        yield f"redis://127.0.0.1:{server.port}/0", server.popen.pid
    finally:
        server.kill()


@contextlib.contextmanager
def running(
    name: str,
    *,
    gateways: int = 1,
    workers: int = 1,
    latency_ms: int = 0,
    worker_concurrency: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    database_settings: Mapping[str, str] | None = None,
) -> Iterator[System]:
    """Start one system on its own Redis and database; stop it and drop both afterwards.
    `database_settings` are PostgreSQL settings for its database's sessions (a diagnosis's:
    `synchronous_commit` off, to see what the commits' WAL flushes cost)."""
    folder = Path(tempfile.mkdtemp(prefix=f"aitasks-bench-{name}-"))
    with (
        private_redis() as (redis_url, redis_pid),
        fresh_postgres_database() as database_url,
        DatabaseCpu(database_url) as postgres_cpu,
    ):
        for setting, value in (database_settings or {}).items():
            database = database_url.rsplit("/", 1)[1]
            with psycopg.connect(database_url, autocommit=True) as connection:
                connection.execute(f'ALTER DATABASE "{database}" SET {setting} = {value}')  # type: ignore[arg-type]
        starter = {"aitasks": _start_aitasks, "seed": _start_seed, "celery": _start_celery}[name]
        system = System(
            name, [], database_url, redis_url, folder, redis_pid, postgres_cpu=postgres_cpu
        )
        with stopped_after(system):
            starter(system, folder, redis_url, gateways, workers, latency_ms,
                    worker_concurrency, dict(extra_env or {}))  # fmt: skip
            if workers:  # with none, the caller starts them when it wants them
                warm_up(system)
            yield system


@contextlib.contextmanager
def stopped_after(system: System) -> Iterator[None]:
    """Stops the system's processes when the block ends; its folder (their logs) is removed, or
    kept and named when the block failed."""
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        for process in [*system.gateways, *system.workers]:
            process.stop()
        if failed:
            print(
                f"{system.name}: its processes' logs are kept in {system.folder}", file=sys.stderr
            )
        else:
            shutil.rmtree(system.folder, ignore_errors=True)


def _start_aitasks(
    system: System, folder: Path, redis_url: str, gateways: int, workers: int,
    latency_ms: int, concurrency: int | None, extra: dict[str, str],
) -> None:  # fmt: skip
    env = service_env(
        DATABASE_URL=system.database_url,
        REDIS_URL=redis_url,
        AITASKS_DATA_DIR=str(folder / "data"),
        AITASKS_MOCK_LATENCY_MS=str(latency_ms),
        AITASKS_LOG_LEVEL="WARNING",
        **extra,
    )
    system.env = env
    migrated = run_cli(["db", "upgrade"], env, folder)
    assert migrated.returncode == 0, migrated.stderr
    for _ in range(gateways):
        port = free_port()
        gateway = _aitasks(system, ["api", "--port", str(port)])
        system.gateways.append(gateway)
        system.base_urls.append(f"http://127.0.0.1:{port}")
        wait_until_up(system.base_urls[-1], gateway)  # type: ignore[arg-type]
    for _ in range(workers):
        start_aitasks_worker(system, concurrency)


def _aitasks(system: System, args: list[str]) -> Proc:
    """`aitasks ARGS`; under the profiler (benchmarks.profile_run) when BENCH_PROFILE_DIR is set."""
    if "BENCH_PROFILE_DIR" not in system.env:
        return Process(args, system.env, system.folder)
    argv = [sys.executable, "-m", "benchmarks.profile_run", *args]
    env = {**system.env, "PYTHONPATH": str(ROOT)}
    return Command(argv, env, system.folder, args[0])


def start_aitasks_worker(system: System, concurrency: int | None = None) -> Proc:
    """One more `aitasks worker`; returns once its heartbeat shows in /v1/status."""
    args = ["worker"] + (["--concurrency", str(concurrency)] if concurrency else [])
    worker = _aitasks(system, args)
    system.workers.append(worker)
    # At WARNING the worker logs nothing on start-up: its heartbeat says it is up.
    deadline = time.monotonic() + 60
    while len(httpx.get(f"{system.base_urls[0]}/v1/status").json()["workers"]) < len(
        system.workers
    ):
        assert worker.popen.poll() is None, worker.log()
        assert time.monotonic() < deadline, "the worker did not come up"
        time.sleep(0.1)
    return worker


def _baseline_env(system: System, redis_url: str, latency_ms: int) -> dict[str, str]:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    return service_env(
        SEED_DATABASE_URL=system.database_url.replace("postgresql://", "postgresql+psycopg://", 1),
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=port,
        SEED_MOCK_LATENCY_MS=str(latency_ms),
        PYTHONPATH=str(ROOT),
    )


def _start_gateways(system: System, folder: Path, env: dict[str, str], app: str, n: int) -> None:
    for _ in range(n):
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"]
        gateway = Command(argv, env, folder, "gateway")
        system.gateways.append(gateway)
        system.base_urls.append(f"http://127.0.0.1:{port}")
        wait_until_up(system.base_urls[-1], gateway)  # type: ignore[arg-type]


def _create_tables(env: dict[str, str], folder: Path) -> None:
    argv = [sys.executable, "-m", "benchmarks.baselines.seed.shared"]
    subprocess.run(argv, env=env, cwd=folder, check=True, capture_output=True, timeout=60)


def _start_seed(
    system: System, folder: Path, redis_url: str, gateways: int, workers: int,
    latency_ms: int, concurrency: int | None, extra: dict[str, str],
) -> None:  # fmt: skip
    env = system.env = {**_baseline_env(system, redis_url, latency_ms), **extra}
    _create_tables(env, folder)
    _start_gateways(system, folder, env, "benchmarks.baselines.seed.main:app", gateways)
    argv = [sys.executable, "-m", "benchmarks.baselines.seed.worker"]
    system.workers = [Command(argv, env, folder, "worker") for _ in range(workers)]


def _start_celery(
    system: System, folder: Path, redis_url: str, gateways: int, workers: int,
    latency_ms: int, concurrency: int | None, extra: dict[str, str],
) -> None:  # fmt: skip
    env = {**_baseline_env(system, redis_url, latency_ms), "CELERY_BROKER_URL": redis_url, **extra}
    system.env = env
    _create_tables(env, folder)
    _start_gateways(system, folder, env, "benchmarks.baselines.celery_app.main:app", gateways)
    # Prefork, one child per core: the idiomatic Celery worker for this 2-core machine.
    argv = [sys.executable, "-m", "celery", "-A", "benchmarks.baselines.celery_app.tasks",
            "worker", "-Q", "mock", "-c", str(concurrency or 2), "--pool", "prefork",
            "--loglevel", "WARNING", "-n", "bench{}@%h"]  # fmt: skip
    system.workers = [
        Command([*argv[:-1], argv[-1].format(i)], env, folder, "worker") for i in range(workers)
    ]


def warm_up(system: System, timeout: float = 60) -> None:
    """One task end to end on every gateway: each system is up and has its connections open."""
    for base_url in system.base_urls:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            task_id = client.post(
                "/v1/chat/completions", json={"prompt": "warm up", "model": MODEL}
            ).json()["task_id"]
            deadline = time.monotonic() + timeout
            while client.get(f"/v1/tasks/{task_id}").json()["status"] not in TERMINAL:
                for worker in system.workers:
                    assert worker.popen.poll() is None, worker.log()
                assert time.monotonic() < deadline, f"{system.name}: warm-up task never finished"
                time.sleep(0.05)


# ---------------------------------------------------------------- measuring


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def peak_rss_mib(pid: int) -> tuple[float, float]:
    """(peak, current) resident memory of a process in MiB, from /proc (psutil is not needed)."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmHWM"], fields["VmRSS"]


def sql(database_url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        return list(connection.execute(statement))  # type: ignore[arg-type]


def status_counts(database_url: str) -> dict[str, int]:
    return dict(sql(database_url, "SELECT status, count(*) FROM tasks GROUP BY status"))


def db_counters(database_url: str) -> dict[str, int]:
    """This database's cumulative activity (PostgreSQL flushes these about once a second)."""
    columns = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted",
               "tup_updated", "blks_hit", "blks_read")  # fmt: skip
    name = database_url.rsplit("/", 1)[1]
    row = sql(
        database_url,
        f"SELECT {', '.join(columns)} FROM pg_stat_database WHERE datname = '{name}'",
    )[0]
    return dict(zip(columns, (int(v) for v in row), strict=True))


def redis_calls(redis_url: str) -> dict[str, int]:
    """Calls per Redis command since the server started (INFO commandstats)."""
    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _process_table() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, name, CPU seconds used so far), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND
        table[int(entry.name)] = (int(fields[1]), name, cpu)
    return table


# Parts of `cpu_use` that are the whole shared PostgreSQL's, not the system's alone: PostgreSQL's
# background processes (WAL writer, checkpointer...) and what `benchmarks.pg_cpu` could not put on
# a database. Shown beside a run's total, not in it.
SHARED_PARTS = ("pg shared", "pg unattributed")


def cpu_use(system: System) -> dict[str, float]:
    """CPU seconds used so far by each part of a run: the system's gateways and workers (with
    their child processes: Celery's prefork pool), Redis, the PostgreSQL backends of the system's
    database (not the other databases' on the shared server; `SHARED_PARTS` beside them), and this
    client. Without a sampler (a cluster of its own), the caller counts PostgreSQL itself."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)

    def tree(pids: list[int]) -> float:
        total, stack = 0.0, list(pids)
        while stack:
            pid = stack.pop()
            total += table[pid][2] if pid in table else 0.0
            stack.extend(children.get(pid, ()))
        return total

    postgres = system.postgres_cpu.reading() if system.postgres_cpu is not None else None
    parts = {
        "gateway": tree([p.popen.pid for p in system.gateways]),
        "worker": tree([p.popen.pid for p in system.workers]),
        **({"postgres": postgres.database} if postgres is not None else {}),
        "redis": tree([system.redis_pid]),
        # This process alone: the systems' processes are its children.
        "client": table[os.getpid()][2],
    }
    if postgres is not None:
        parts |= {"pg shared": postgres.shared, "pg unattributed": postgres.unattributed}
    return parts


@dataclass
class LoadResult:
    started: float
    submitted_at: list[float] = field(default_factory=list)  # when each 202 came back
    latencies: list[float] = field(default_factory=list)  # submit sent -> result seen, seconds
    finished_at: list[float] = field(default_factory=list)
    failures: int = 0  # tasks that ended other than SUCCESS
    # CPU seconds each part of the run used (see `cpu_use`), filled in by `measured`.
    cpu: dict[str, float] = field(default_factory=dict)
    # Requests the system failed: at the transport (connection reset, timeout) or with a 5xx.
    errors: int = 0
    # Open loop only: how late the client sent each task against its schedule (its own lag, not
    # the system's), and each latency counted from the send instead of from when it was due.
    client_lags: list[float] = field(default_factory=list)
    from_sent: list[float] = field(default_factory=list)

    @property
    def submitted_per_s(self) -> float:
        return len(self.submitted_at) / (max(self.submitted_at) - self.started)

    @property
    def completed_per_s(self) -> float:
        return len(self.finished_at) / (max(self.finished_at) - self.started)

    def ms(self, share: float, of: list[float] | None = None) -> float:
        """A percentile of the latencies (or of `of`), in ms."""
        return percentile(self.latencies if of is None else of, share) * 1000

    def cpu_per_task(self) -> str:
        """Where the machine's time went: CPU ms per completed task, by part; the shared
        PostgreSQL's parts (`SHARED_PARTS`) after the total, not in it."""
        n = len(self.finished_at)
        own = {part: s for part, s in self.cpu.items() if part not in SHARED_PARTS}
        parts = ", ".join(f"{part} {seconds / n * 1000:.2f}" for part, seconds in own.items())
        shared = ", ".join(
            f"{part} {self.cpu[part] / n * 1000:.2f}" for part in SHARED_PARTS if part in self.cpu
        )
        return f"{sum(own.values()) / n * 1000:.1f} ms ({parts})" + (
            f" + the server's {shared}" if shared else ""
        )


def measured(system: System, load: Awaitable[LoadResult]) -> LoadResult:
    """Run `load` against `system`, with the CPU each of its parts spent meanwhile."""
    before = cpu_use(system)
    result: LoadResult = run_loop(load)
    after = cpu_use(system)
    result.cpu = {part: after[part] - before[part] for part in after}
    return result


Waiter = Callable[[aiohttp.ClientSession, str], Awaitable[str]]


class FailedAnswer(Exception):
    """A 5xx answer: the system failed the request (the seed's design does, past its pool)."""


async def expect(response: aiohttp.ClientResponse, status: int) -> None:
    """`status`, or a counted failure for a 5xx; any other answer is the benchmark's bug."""
    if response.status >= 500:
        raise FailedAnswer(f"{response.status}: {await response.text()}")
    assert response.status == status, await response.text()


async def get_json(client: aiohttp.ClientSession, path: str, **kwargs: Any) -> Any:
    async with client.get(path, **kwargs) as response:
        await expect(response, 200)
        return await response.json()


def poller(interval: float) -> Waiter:
    """The seed's client: GET the task every `interval` seconds until it has finished."""

    async def wait(client: aiohttp.ClientSession, task_id: str) -> str:
        while True:
            status: str = (await get_json(client, f"/v1/tasks/{task_id}"))["status"]
            if status in TERMINAL:
                return status
            await asyncio.sleep(interval)

    return wait


async def long_wait(client: aiohttp.ClientSession, task_id: str) -> str:
    """`Prefer: wait=30`: the gateway answers when the task has finished."""
    while True:
        task = await get_json(client, f"/v1/tasks/{task_id}", headers={"Prefer": "wait=30"})
        status: str = task["status"]
        if status in TERMINAL:
            return status


async def event_stream(client: aiohttp.ClientSession, task_id: str) -> str:
    """The task's SSE stream, read until its `done` event."""
    async with client.get(f"/v1/tasks/{task_id}/events") as response:
        done = False
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line == "event: done":
                done = True
            elif done and line.startswith("data: "):
                return "SUCCESS" if '"status": "SUCCESS"' in line else "FAILED"
    raise AssertionError(f"event stream of {task_id} ended without `done`")


WAITERS: dict[str, Callable[[float], Waiter]] = {
    "poll": poller,
    "wait": lambda _: long_wait,
    "sse": lambda _: event_stream,
}


def session(base_url: str, connections: int) -> aiohttp.ClientSession:
    """The load generator's HTTP client for one gateway. Call it inside the running loop."""
    # Idle connections are dropped well before uvicorn's 5 s keep-alive timeout: a request sent
    # on a connection the server is closing fails at the transport.
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=1.0)
    timeout = aiohttp.ClientTimeout(total=120)
    return aiohttp.ClientSession(base_url, connector=connector, timeout=timeout)


def clients(base_urls: list[str], concurrency: int) -> list[aiohttp.ClientSession]:
    per = concurrency // len(base_urls) + 10
    return [session(u, per) for u in base_urls]


# A request the system failed: at the transport (connection reset, timeout), or with a 5xx.
FAILED_REQUESTS = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    TimeoutError,
    FailedAnswer,
)


async def one_task(
    client: aiohttp.ClientSession,
    prompt: str,
    wait: Waiter,
    result: LoadResult,
    since: float | None = None,
) -> bool:
    """Submit a chat task, wait for it and record it in `result`: its latency from `since` (by
    default, from sending the submit). False when the system failed a request on the way."""
    sent = time.perf_counter()
    started = sent if since is None else since
    try:
        body = {"prompt": prompt, "model": MODEL}
        async with client.post("/v1/chat/completions", json=body) as response:
            await expect(response, 202)
            task_id = (await response.json())["task_id"]
        result.submitted_at.append(time.perf_counter())
        status = await wait(client, task_id)
    except FAILED_REQUESTS:
        # The system's failure: counted and reported, not fatal.
        result.errors += 1
        return False
    seen = time.perf_counter()
    result.failures += status != "SUCCESS"
    result.latencies.append(seen - started)
    result.finished_at.append(seen)
    if since is not None:
        result.client_lags.append(sent - since)
        result.from_sent.append(seen - sent)
    return True


async def closed_loop(
    base_urls: list[str],
    n: int,
    concurrency: int,
    wait: Waiter,
    progress: Callable[[], None] = lambda: None,
    prompt: str = "Hello, who are you?",
    limit_s: float = 900,
) -> LoadResult:
    """`concurrency` clients, each submitting a task and waiting for its result, then the next,
    until `n` tasks have finished. Requests are spread round-robin over the gateways."""
    pool = clients(base_urls, concurrency)
    result = LoadResult(started=time.perf_counter())
    counter = iter(range(n))

    async def client_loop() -> None:
        for i in counter:
            if await one_task(pool[i % len(pool)], f"{prompt} #{i}", wait, result):
                progress()

    try:
        # A system that stops finishing tasks (a dead worker) fails the run instead of hanging it.
        async with asyncio.timeout(limit_s):
            await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    finally:
        for client in pool:
            await client.close()
    return result


async def open_loop(
    base_url: str, rate: float, seconds: float, wait: Waiter, prompt: str = "Hello, who are you?"
) -> LoadResult:
    """Tasks arriving at a fixed `rate` per second for `seconds`, whether or not earlier ones have
    finished; each is submitted, then waited for. A task's latency counts from when it was due,
    not from when the client got round to sending it, so a client falling behind shows; how far
    it fell behind is kept too (`client_lags`), and the latency from the send (`from_sent`).

    The client is made so as not to be what is measured: its connections are opened before the
    first task is due (no task pays a TCP handshake), and one scheduler starts each task when it
    is due (not thousands of coroutines made up front, whose making delays the first ones)."""
    n = int(rate * seconds)
    # Enough for the tasks of 100 ms in flight at once; more are opened if needed. (Not many
    # more: the idle ones are closed after the pool's keep-alive, all at once.)
    warm = min(n, max(10, int(rate / 10)))
    client = session(base_url, n + 10)
    tasks: set[asyncio.Task[bool]] = set()
    try:
        await _open_connections(client, warm)
        result = LoadResult(started=time.perf_counter())
        for i in range(n):
            due = result.started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one_task(client, f"{prompt} #{i}", wait, result, since=due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await client.close()
    return result


async def _open_connections(client: aiohttp.ClientSession, n: int) -> None:
    """`n` keep-alive connections opened at once (each by a health check), left in the pool."""

    async def check() -> None:
        async with client.get("/healthz") as response:
            await response.read()

    await asyncio.gather(*(check() for _ in range(n)))


def run_loop(coroutine: Any) -> Any:
    """Run the client on uvloop where it is installed: less client CPU on a small machine."""
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def progress_bar(total: int, label: str) -> tuple[Any, Callable[[], None]]:
    """A rich progress bar on a terminal, nothing otherwise; returns (context, advance)."""
    from rich.progress import Progress

    bar = Progress(transient=True, disable=not sys.stderr.isatty())
    task = bar.add_task(label, total=total)
    return bar, lambda: bar.advance(task)
