"""`scripts/test`'s first install (about 1.6 GB: torch, transformers, Playwright) says what it is
about to fetch and lets pip show its progress, instead of sitting silent for a minute.

`ensure_venv` from `scripts/lib.sh` runs here in a copy of the project whose `.venv/bin/python`
is a stand-in that records how pip was called and talks as pip does; nothing is installed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/calls.log"
if [ "$3" = install ] && [ "$4" != -q ]; then
    echo "Collecting torch==2.13.0"
    echo "Successfully installed torch-2.13.0"
fi
"""


def _ensure_venv(root: Path, extras: str) -> subprocess.CompletedProcess[str]:
    (root / "scripts").mkdir(parents=True, exist_ok=True)
    shutil.copy(SCRIPTS / "lib.sh", root / "scripts" / "lib.sh")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return subprocess.run(
        ["bash", "-c", f'source scripts/lib.sh && ensure_venv "{extras}"'],
        cwd=root,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_test_install_says_its_size_and_shows_pips_progress(tmp_path: Path) -> None:
    done = _ensure_venv(tmp_path, "test")
    assert done.returncode == 0, done.stderr
    assert "about 1.6 GB" in done.stderr and "torch" in done.stderr, done.stderr
    # pip's own lines reach the user: the project install is not run quietly.
    assert "Collecting torch" in done.stdout + done.stderr
    calls = (tmp_path / ".venv" / "bin" / "calls.log").read_text().splitlines()
    (install,) = [c for c in calls if c.startswith("-m pip install") and "-e" in c.split()]
    assert "-q" not in install.split() and install.endswith("[test]"), install
    assert "installed aitasks[test]" in done.stderr


def test_a_second_run_installs_nothing(tmp_path: Path) -> None:
    assert _ensure_venv(tmp_path, "test").returncode == 0
    again = _ensure_venv(tmp_path, "test")
    assert again.returncode == 0 and "installing" not in again.stderr, again.stderr
