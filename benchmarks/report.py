"""Shared by the benchmarks: what machine this is, and appending a run to RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def _version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "not found"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def machine_summary() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.platform()}"


def versions() -> str:
    return "; ".join(
        [
            f"Python {platform.python_version()}",
            _version(["psql", "--version"]),
            _version(["redis-server", "--version"]),
            # The tree measured: the commit, and "-dirty" when src had changes not yet committed.
            "aitasks "
            + _version(["git", "-C", str(RESULTS.parent), "describe", "--always", "--dirty"]),
        ]
    )


def append_result(title: str, command: str, lines: list[str]) -> None:
    """Add one run to RESULTS.md, with date, machine, versions and the exact command."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = [
        f"### {title} — {stamp}",
        "",
        f"- machine: {machine_summary()}",
        f"- versions: {versions()}",
        f"- command: `{command}`",
        "",
        "```",
        *lines,
        "```",
        "",
    ]
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach run as its benchmark recorded it.\n\n")
    with RESULTS.open("a") as out:
        out.write("\n".join(block) + "\n")
