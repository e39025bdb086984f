"""Run an `aitasks` command under pyinstrument, counting SQL statements and Redis round trips.

    BENCH_PROFILE_DIR=/tmp/prof python -m benchmarks.profile_run worker

Writes, when the process exits (SIGTERM included), `<dir>/<command>-<pid>.txt`: the statements
it ran by kind, its Redis commands and pipelines, and pyinstrument's call tree. The harness starts
aitasks' processes through this when BENCH_PROFILE_DIR is set (`e2e --profile DIR`).
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from sqlalchemy import event
from sqlalchemy.engine import Engine

statements: Counter[str] = Counter()
redis_commands: Counter[str] = Counter()


def _kind(statement: str) -> str:
    """A statement's first words and table, with the literal parts folded, as its kind."""
    flat = re.sub(r"\s+", " ", statement).strip()
    return re.sub(r"\$\d+|%\(\w+\)s|'[^']*'", "?", flat)[:110]


@event.listens_for(Engine, "before_cursor_execute")
def _count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
    statements[_kind(statement)] += 1


def _count_redis() -> None:
    from redis.asyncio.client import Pipeline, Redis

    command, execute = Redis.execute_command, Pipeline.execute

    async def counted_command(self: Redis, *args: Any, **options: Any) -> Any:
        redis_commands[str(args[0]).upper()] += 1
        return await command(self, *args, **options)

    async def counted_execute(self: Pipeline, raise_on_error: bool = True) -> Any:
        names = "+".join(sorted({str(c[0][0]).upper() for c in self.command_stack}))
        redis_commands[f"pipeline[{names}]"] += 1
        return await execute(self, raise_on_error)

    Redis.execute_command = counted_command  # type: ignore[method-assign]
    Pipeline.execute = counted_execute  # type: ignore[method-assign]


def main() -> None:
    out = Path(os.environ["BENCH_PROFILE_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    _count_redis()
    profiler = Profiler(interval=0.005, async_mode="disabled")

    def report() -> None:
        profiler.stop()
        lines = [f"{sum(statements.values())} SQL statements:"]
        lines += [f"{n:8d}  {s}" for s, n in statements.most_common(40)]
        lines += [f"{sum(redis_commands.values())} Redis round trips:"]
        lines += [f"{n:8d}  {c}" for c, n in redis_commands.most_common(40)]
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        (out / name).write_text("\n".join(lines) + "\n\n" + text)

    name = f"{sys.argv[1]}-{os.getpid()}.txt"
    atexit.register(report)
    # uvicorn restores this handler after its own and raises SIGTERM again on the way out: exiting
    # through SystemExit runs the report, where the default handler would not.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler.start()
    sys.argv = ["aitasks", *sys.argv[1:]]
    from aitasks.cli import main as aitasks_main

    aitasks_main()


if __name__ == "__main__":
    main()
