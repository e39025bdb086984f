"""Every `aitasks … --help` reads right: no space stranded before punctuation (a `[default: …]`
in a help text was eaten as Rich markup, leaving `at once .`), no `<bool>` beside a flag that
takes no value, and `worker --concurrency` says what it defaults to."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from aitasks.cli import app


def _command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """`()` for `aitasks` itself, then every group and command under it, found by walking the
    command tree (so a new subcommand is checked without being listed here)."""
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_checked() -> None:
    assert {" ".join(p) for p in COMMANDS} >= {
        "", "up", "api", "worker", "chat", "image", "status", "db", "db upgrade", "db current",
        "keys", "keys create", "keys list", "keys revoke",
    }  # fmt: skip


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "aitasks")
def test_help_reads_right(path: tuple[str, ...]) -> None:
    text = _help(path)
    for stray in (" .", " ,", " ;", " :"):
        assert stray not in text, f"{stray!r} in `aitasks {' '.join(path)} --help`:\n{text}"
    assert "<bool>" not in text, text
    assert "--help" in text and "Show this message and exit." in text


def test_worker_help_shows_the_concurrency_default() -> None:
    text = " ".join(_help(("worker",)).replace("│", " ").split())
    assert "Tasks in flight at once. [default: AITASKS_WORKER_CONCURRENCY, else 32]" in text


def test_status_watch_is_a_plain_flag() -> None:
    text = _help(("status",))
    assert "--watch" in text and "--no-watch" not in text


def test_the_installed_command_prints_the_same_help() -> None:
    """`aitasks --help` as a shell runs it: the console script, not the test runner's app."""
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "aitasks"), "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "<bool>" not in done.stdout and " ." not in done.stdout
    assert "chat" in done.stdout and "worker" in done.stdout
