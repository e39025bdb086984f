"""PostgreSQL's CPU on this machine, put on the database it served.

A server runs one backend process per connection, each serving one database (pg_stat_activity
names it), and background processes that serve every database at once (checkpointer, background
writer, WAL writer, autovacuum launcher and workers, logger...). Summing every `postgres` process,
as the harness did, charges a system with the work of everyone else on the shared server (the
other systems' databases, other tests), and loses the CPU of backends that ended between two
readings: a difference that can come out negative.

`DatabaseCpu` samples from a thread which processes the server has (the postmaster's children),
whom each serves (pg_stat_activity) and how much CPU each has used so far (/proc/PID/stat utime +
stime), keeping the last reading of one that ended. Its reading splits the server's CPU since the
sampler started into the database's backends, other databases' backends, the shared background
processes, and what no sample could put anywhere (`PostgresCpu.unattributed`).

`cluster_cpu` is the whole of a cluster's CPU, for a cluster that serves one system alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# pg_stat_activity's backend types that do a client's work on its database.
CLIENT_BACKENDS = frozenset({"client backend", "parallel worker"})
# How often the sampler looks, in seconds: a backend that lives shorter than this may be missed
# (it then shows as unattributed), a pool's connections are not.
SAMPLE_SECONDS = 0.25

Role = Literal["database", "other", "shared", "unknown", "sampler"]


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    """One reading of a process from /proc/PID/stat."""

    parent: int
    # When it started, in clock ticks after boot: with the pid, it names one process (pids are
    # reused).
    started: int
    seconds: float  # CPU it used so far (utime + stime)
    reaped: float  # CPU its ended children used, once it waited for them (cutime + cstime)

    @property
    def total(self) -> float:
        """Its CPU and its reaped children's: what its parent's `reaped` grows by when it ends."""
        return self.seconds + self.reaped


def process_cpu(pid: int) -> ProcessCpu | None:
    """The process's reading; None when it has ended (or never was)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The name, in parentheses, may hold spaces: the fields are counted after its last `)`.
    after_name = stat[stat.rindex(")") + 2 :].split()
    ticks = [int(after_name[i]) for i in (11, 12, 13, 14)]
    return ProcessCpu(
        parent=int(after_name[1]),
        started=int(after_name[19]),
        seconds=(ticks[0] + ticks[1]) / TICKS_PER_SECOND,
        reaped=(ticks[2] + ticks[3]) / TICKS_PER_SECOND,
    )


def children(pid: int) -> list[int]:
    """The process's children now (the postmaster is single-threaded: its main thread's)."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: every process, asked
        return [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and (found := process_cpu(int(entry.name))) is not None
            and found.parent == pid
        ]
    except OSError:
        return []
    return [int(child) for child in listed.split()]


def _steady_children(postmaster: int) -> tuple[ProcessCpu, dict[int, ProcessCpu]]:
    """The postmaster's reading and its children's, read with no child reaped meanwhile: one that
    ended and was reaped during the reading would be counted in neither or in both."""
    for _ in range(20):
        before = _running(postmaster)
        found = {pid: reading for pid in children(postmaster) if (reading := process_cpu(pid))}
        after = _running(postmaster)
        if after.reaped == before.reaped:
            break
    # (A server reaping faster than twenty readings: off by the few processes it reaped.)
    return after, found


def _running(pid: int) -> ProcessCpu:
    reading = process_cpu(pid)
    if reading is None:
        raise ProcessLookupError(f"PostgreSQL's postmaster {pid} is not running")
    return reading


def cluster_cpu(postmaster: int) -> float:
    """CPU seconds a whole cluster used so far: the postmaster, every process it started that
    still runs, and those that ended (it reaped them: its cutime + cstime)."""
    own, live = _steady_children(postmaster)
    return own.total + sum(reading.total for reading in live.values())


@dataclass(frozen=True, slots=True)
class PostgresCpu:
    """CPU seconds of one server's processes, by whom they served."""

    database: float  # the database's backends (and their parallel workers)
    other_databases: float  # every other database's backends
    # The processes that serve all databases: the postmaster, checkpointer, background and WAL
    # writers, autovacuum (its workers name a database, but tidy up after everyone's writes)...
    shared: float
    # What no sample could put on anyone: backends that lived between two samples, or were only
    # seen before they had logged in, and each ended process's CPU after its last sample.
    unattributed: float

    def __sub__(self, earlier: PostgresCpu) -> PostgresCpu:
        return PostgresCpu(
            *(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(PostgresCpu))
        )

    def __str__(self) -> str:
        return ", ".join(f"{f.name} {getattr(self, f.name):.3f} s" for f in fields(PostgresCpu))


@dataclass(slots=True)
class _Tracked:
    """One process of the server, as the samples saw it."""

    role: Role
    existed: bool  # it ran before the sampler started
    since: float  # its CPU when the sampler started (0 for one started after)
    last: float  # its CPU at the latest sample that found it
    ended: bool = False


def _role(activity: tuple[str | None, str] | None, database: str) -> Role:
    if activity is None:
        return "unknown"
    datname, backend_type = activity
    if backend_type not in CLIENT_BACKENDS:
        return "shared"
    return "database" if datname == database else "other"


class DatabaseCpu:
    """A sampler of the server's processes, on the PostgreSQL `database_url` names, run from a
    thread between `start` and `close` (or as a context manager); `reading()` is the CPU used
    since the start, `PostgresCpu`, of which `database` is `database_url`'s. The server must run
    on this machine (its processes are read from /proc). The sampler's own connection goes to the
    `postgres` database, and is left out of every figure."""

    def __init__(
        self,
        database_url: str,
        *,
        interval: float = SAMPLE_SECONDS,
        sampler_database: str = "postgres",
    ) -> None:
        conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.database = str(conninfo_to_dict(conninfo)["dbname"])
        self._sampler_conninfo = make_conninfo(conninfo, dbname=sampler_database)
        self._interval = interval
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: psycopg.Connection[tuple[Any, ...]] | None = None
        self._tracked: dict[tuple[int, int], _Tracked] = {}
        self._activity: dict[int, tuple[str | None, str]] = {}
        self._postmaster = 0
        self._own_backend = 0
        self._started_ticks = 0.0
        self._postmaster_since = ProcessCpu(0, 0, 0.0, 0.0)
        self._postmaster_now = self._postmaster_since

    # ------------------------------------------------------------ life

    def start(self) -> DatabaseCpu:
        """Connect, take the first sample (the baseline) and start sampling."""
        self._connection = psycopg.connect(self._sampler_conninfo, autocommit=True)
        backend = self._connection.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        self._own_backend = int(backend[0])
        own = process_cpu(self._own_backend)
        if own is None:
            self._connection.close()
            raise RuntimeError(
                "PostgreSQL does not run on this machine (its backend is not in /proc): "
                "its CPU cannot be read"
            )
        self._postmaster = own.parent
        self._started_ticks = _uptime_ticks()
        with self._lock:
            self._sample()
            self._postmaster_since = self._postmaster_now
        self._thread = threading.Thread(target=self._run, name="pg-cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        if self._connection is not None:
            self._connection.close()

    def __enter__(self) -> DatabaseCpu:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ reading

    def reading(self) -> PostgresCpu:
        """The server's CPU since the start, from a sample taken now."""
        with self._lock:
            self._sample()
            by_role: dict[Role, float] = dict.fromkeys(("database", "other", "shared"), 0.0)
            unknown = ended_lifetimes = 0.0
            for process in self._tracked.values():
                used = process.last - process.since
                if process.ended:
                    ended_lifetimes += process.last
                if process.role == "unknown":
                    # Never seen in pg_stat_activity: one that was there before the sampler
                    # started is a background process (the logger); a newer one, a backend
                    # that no sample saw after its login.
                    if process.existed:
                        by_role["shared"] += used
                    else:
                        unknown += used
                elif process.role != "sampler":
                    by_role[process.role] += used
            postmaster = self._postmaster_now
            reaped = postmaster.reaped - self._postmaster_since.reaped
            return PostgresCpu(
                database=by_role["database"],
                other_databases=by_role["other"],
                shared=by_role["shared"] + postmaster.seconds - self._postmaster_since.seconds,
                # The postmaster's reaped children's CPU that no ended process's last reading
                # accounts for (their whole lives: the reaped time counts those too).
                unattributed=unknown + max(0.0, reaped - ended_lifetimes),
            )

    # ------------------------------------------------------------ sampling

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            with self._lock:
                self._sample()

    def _sample(self) -> None:
        """Read the processes, then whom they serve; called with the lock held."""
        postmaster, live = _steady_children(self._postmaster)
        self._postmaster_now = postmaster
        self._read_activity()
        seen = set()
        for pid, reading in live.items():
            key = (pid, reading.started)
            seen.add(key)
            process = self._tracked.get(key)
            if process is None:
                existed = reading.started <= self._started_ticks
                since = reading.total if existed else 0.0
                process = self._tracked[key] = _Tracked("unknown", existed, since, reading.total)
            process.last = reading.total
            if pid == self._own_backend:
                process.role = "sampler"
            elif process.role == "unknown" or pid in self._activity:
                # Once known, kept: an ended backend's entry leaves pg_stat_activity first.
                process.role = _role(self._activity.get(pid), self.database)
        for key, process in self._tracked.items():
            if key not in seen:
                process.ended = True

    def _read_activity(self) -> None:
        """Whom each backend serves; the last answer is kept while the server cannot be asked
        (a restart, in a chaos run)."""
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(self._sampler_conninfo, autocommit=True)
                backend = self._connection.execute("SELECT pg_backend_pid()").fetchone()
                self._own_backend = int(backend[0]) if backend else 0
            rows = self._connection.execute(
                "SELECT pid, datname, backend_type FROM pg_stat_activity"
            ).fetchall()
        except psycopg.Error:
            if self._connection is not None:
                with contextlib.suppress(psycopg.Error):
                    self._connection.close()
            return
        self._activity = {int(pid): (datname, str(kind)) for pid, datname, kind in rows}


def _uptime_ticks() -> float:
    """Now, in clock ticks after boot (the unit of a process's start time)."""
    return float(Path("/proc/uptime").read_text().split()[0]) * TICKS_PER_SECOND
