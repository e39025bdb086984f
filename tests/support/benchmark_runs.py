"""A benchmark run as its smoke tests run it: `python -m benchmarks.<module> --quick`, from the
project's root, its output kept for the test to read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_run(module: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`benchmarks.<module> --quick`, run to its end; fails the test when it does not exit 0."""
    run = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run
