"""A PostgreSQL cluster of a test's own, which the test may restart, reconfigure and stop without
touching the suite's shared server: `initdb` into a fresh folder, listening on loopback only.

PostgreSQL refuses to run as root, and the suite runs as root in CI and containers, so when the
test runs as root every server command runs as the `postgres` OS user (`runuser`). Missing
binaries fail the test, never skip it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from tests.support.processes import free_port
from tests.support.services import run_async

SERVER_USER = "postgres"


def postgres_bin() -> Path:
    """The folder of the newest installed PostgreSQL server's binaries (Debian's layout first)."""
    candidates = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    return Path(pg_ctl).parent


class PostgresCluster:
    """One cluster in a folder of its own; `url` reaches its `postgres` database as `postgres`."""

    # A test's cluster keeps nothing worth a flush to disk: it trades durability for speed.
    INITDB_OPTIONS: tuple[str, ...] = ("--no-sync",)
    SETTINGS = (
        "max_connections = 100\nfsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
    )

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.data = folder / "data"
        self.log_path = folder / "server.log"
        self.bin = postgres_bin()
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60, check: bool = True) -> str:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"\n{self.log()}"
            )
        return done.stdout

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            *self.INITDB_OPTIONS, "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        where = (
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.folder}'\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(where + self.SETTINGS)

    def _pg_ctl(self, action: str, *args: str, check: bool = True) -> None:
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-l", str(self.log_path), "-w", *args,
            check=check,
        )  # fmt: skip

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """A fast restart: open sessions are ended (57P01), new ones refused while it shuts down
        and starts up (57P03), then it serves again."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """Stop the server at once if it runs (a stale pid file is not an error here)."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate", check=False)

    def execute(self, *statements: str) -> None:
        """Run statements as the superuser, each on its own (ALTER SYSTEM cannot run in a
        transaction block)."""

        async def run() -> None:
            connection = await asyncpg.connect(self.url, timeout=5)
            try:
                for statement in statements:
                    await connection.execute(statement)
            finally:
                await connection.close()

        run_async(run())


ClusterT = TypeVar("ClusterT", bound=PostgresCluster)


@contextmanager
def started_cluster(
    make: Callable[[Path], ClusterT], prefix: str = "aitasks-pg-"
) -> Iterator[ClusterT]:
    """A cluster `make` builds in a fresh folder, started, then stopped and removed afterwards
    whatever happens."""
    postgres_bin()  # fail before making anything when PostgreSQL is not installed
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = make(folder)
    try:
        # The folder of pytest's tmp_path is root's alone; the server's user needs one it owns.
        if os.geteuid() == 0:
            server = pwd.getpwnam(SERVER_USER)
            os.chown(folder, server.pw_uid, server.pw_gid)
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def own_postgres() -> AbstractContextManager[PostgresCluster]:
    """A started cluster of its own on a free loopback port."""
    return started_cluster(lambda folder: PostgresCluster(folder, free_port()))
