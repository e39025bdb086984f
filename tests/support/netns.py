"""Hosts on one machine: network namespaces joined by veth pairs, for a test that runs the system
as it is deployed, on machines that share nothing but the network.

Host `a` holds a bridge (10.231.0.1/24); hosts `b` (10.231.0.2) and `c` (10.231.0.3) each have a
veth pair into it. The addresses exist only inside these namespaces, which the test makes and
deletes itself; nothing is routed anywhere else. The test's own client code runs in a thread that
has entered host `a` (`Network.on_a`), so it reaches every host and nothing outside them.

Namespaces are named `aitx-<pid>-<host>`; ones left by a run that was killed outright (its pid
gone) are deleted before new ones are made. Needs root and iproute2's `ip`: without them the
test fails, never skips.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import pytest

T = TypeVar("T")

PREFIX = "aitx"
SUBNET = "10.231.0"
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Host:
    name: str  # the namespace
    address: str

    def exec(self, *command: str) -> list[str]:
        """`command`, run on this host."""
        return ["ip", "netns", "exec", self.name, *command]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]


def _delete_stale() -> None:
    """Delete namespaces of ours whose test process is gone (killed before it cleaned up)."""
    for name in _namespaces():
        parts = name.split("-")
        ours = len(parts) == 3 and parts[0] == PREFIX and parts[1].isdigit()
        if ours and not os.path.exists(f"/proc/{parts[1]}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _enter(name: str) -> None:
    """Move the calling thread (only it) into the namespace `name`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name} failed")
    finally:
        os.close(fd)


class Network:
    """Three hosts; the test's client code runs on host `a`."""

    def __init__(self, hosts: dict[str, Host]) -> None:
        self.hosts = hosts

    def on_a(self, action: Callable[[], T]) -> T:
        """Run `action` in a new thread on host `a` (threads it starts are there too). A new
        thread each time, so a clean-up never waits behind a test that hangs."""
        pool = ThreadPoolExecutor(1, initializer=_enter, initargs=(self.hosts["a"].name,))
        try:
            return pool.submit(action).result()
        finally:
            pool.shutdown(wait=False)  # a timed-out test's thread is not waited for


def _require() -> None:
    if os.geteuid() != 0:
        pytest.fail("the cross-host test needs root (network namespaces)")
    if shutil.which("ip") is None:
        pytest.fail("the cross-host test needs iproute2's `ip`")


@contextmanager
def three_hosts() -> Iterator[Network]:
    """Hosts a, b, c as above, deleted afterwards whatever happens."""
    _require()
    _delete_stale()
    hosts = {
        letter: Host(f"{PREFIX}-{os.getpid()}-{letter}", f"{SUBNET}.{n}")
        for n, letter in enumerate("abc", start=1)
    }
    try:
        for host in hosts.values():
            _ip("netns", "add", host.name)
            _ip("-n", host.name, "link", "set", "lo", "up")
        a = hosts["a"].name
        _ip("-n", a, "link", "add", "br0", "type", "bridge")
        _ip("-n", a, "addr", "add", f"{hosts['a'].address}/24", "dev", "br0")
        _ip("-n", a, "link", "set", "br0", "up")
        for letter in "bc":
            host, veth = hosts[letter], f"v{letter}"
            _ip("-n", a, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
                host.name)  # fmt: skip
            _ip("-n", a, "link", "set", veth, "master", "br0")
            _ip("-n", a, "link", "set", veth, "up")
            _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.name, "link", "set", "eth0", "up")
        yield Network(hosts)
    finally:
        for host in hosts.values():
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, check=False)
