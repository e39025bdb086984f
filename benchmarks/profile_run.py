"""Run an `aitasks` command under pyinstrument, counting SQL statements and Redis round trips.

    BENCH_PROFILE_DIR=/tmp/prof python -m benchmarks.profile_run worker

Writes, when the process exits (SIGTERM included), `<dir>/<command>-<pid>.txt`: the statements
it ran by kind, its Redis commands and pipelines, and pyinstrument's call tree. The harness starts
aitasks' processes through this when BENCH_PROFILE_DIR is set (`e2e --profile DIR`).

On PostgreSQL the statements are counted where asyncpg sends them, so that those the store runs on
asyncpg itself (`store/driver.py`: the claim, the finish, a poll's read) count as SQLAlchemy's
do; beside each kind, how many of them came through SQLAlchemy (its cursor events). asyncpg also
sends SQLAlchemy's BEGIN, COMMIT and ROLLBACK and its dialect's first queries (no cursor event
sees those), and the statements prepared by `prepare()` (SQLAlchemy's and the store's: a round
trip each) are counted apart. On SQLite, SQLAlchemy's count is the whole.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from sqlalchemy import event
from sqlalchemy.engine import Engine

# Statements SQLAlchemy ran (its cursor events), by kind.
statements: Counter[str] = Counter()
# Statements asyncpg sent, whoever asked (SQLAlchemy, store/driver.py, asyncpg's transactions), and
# the statements it prepared, by kind.
sent: Counter[str] = Counter()
prepared: Counter[str] = Counter()
redis_commands: Counter[str] = Counter()
# asyncpg's calls that run a statement: the connection's (the SQL their first argument) and a
# prepared statement's (its own SQL). Each runs its statement once, calling none of the others.
CONNECTION_CALLS = ("execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany")
PREPARED_CALLS = ("executemany", "fetch", "fetchrow", "fetchval", "fetchmany")


def _kind(statement: str) -> str:
    """A statement's first words and table, with the literal parts folded, as its kind."""
    flat = re.sub(r"\s+", " ", statement).strip()
    return re.sub(r"\$\d+|%\(\w+\)s|'[^']*'", "?", flat)[:110]


@event.listens_for(Engine, "before_cursor_execute")
def _count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
    statements[_kind(statement)] += 1


Method = Callable[..., Coroutine[Any, Any, Any]]


def _counting(counter: Counter[str], method: Method, sql_of: Callable[..., str]) -> Method:
    """`method`, counting its statement's kind in `counter` first (`sql_of(self, *args)`)."""

    @functools.wraps(method)
    async def counted(self: Any, *args: Any, **options: Any) -> Any:
        counter[_kind(sql_of(self, *args, **options))] += 1
        return await method(self, *args, **options)

    return counted


def _sql_argument(_connection: Any, query: str, *_args: Any, **_options: Any) -> str:
    return query


def _own_sql(statement: Any, *_args: Any, **_options: Any) -> str:
    return str(statement.get_query())


def _count_asyncpg() -> None:
    """Count what asyncpg sends (absent, as with SQLite alone, nothing to count)."""
    try:
        from asyncpg.connection import Connection  # type: ignore[import-untyped]
        from asyncpg.prepared_stmt import PreparedStatement  # type: ignore[import-untyped]
    except ImportError:
        return
    for name in CONNECTION_CALLS:
        setattr(Connection, name, _counting(sent, getattr(Connection, name), _sql_argument))
    for name in PREPARED_CALLS:
        setattr(
            PreparedStatement, name, _counting(sent, getattr(PreparedStatement, name), _own_sql)
        )
    Connection.prepare = _counting(prepared, Connection.prepare, _sql_argument)


def _statement_lines() -> list[str]:
    if not sent:
        lines = [f"{sum(statements.values())} SQL statements (through SQLAlchemy):"]
        return lines + [f"{n:8d}  {s}" for s, n in statements.most_common(40)]
    lines = [
        f"{sum(sent.values())} SQL statements sent by asyncpg, {sum(statements.values())} of them "
        "through SQLAlchemy's cursor:",
        "    sent  via SQLAlchemy",
    ]
    lines += [f"{n:8d}  {statements[s]:8d}  {s}" for s, n in sent.most_common(40)]
    # asyncpg's own statement cache, behind `fetch(sql, *args)`, prepares without this call.
    lines += [f"{sum(prepared.values())} prepared by prepare() (a round trip each):"]
    return lines + [f"{n:8d}  {s}" for s, n in prepared.most_common(20)]


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
    _count_asyncpg()
    profiler = Profiler(interval=0.005, async_mode="disabled")

    def report() -> None:
        profiler.stop()
        lines = _statement_lines()
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
