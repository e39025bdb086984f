"""Each benchmark runs end to end in its --quick form: it starts, measures, prints its figures and
exits 0, without touching RESULTS.md. How fast it measured is not checked here."""

from __future__ import annotations

import pytest

from tests.support.benchmark_runs import ROOT, quick_run

RESULTS = ROOT / "benchmarks" / "RESULTS.md"


@pytest.mark.parametrize(
    ("module", "figures"),
    [
        ("e2e", ["submitted/s", "completed/s", "p99 ms", "/seed", "/celery", "OpenAI sync"]),
        ("slow_models", ["peak RSS", "tasks/s", "every task SUCCESS"]),
        ("scale_out", ["completed/s", "2 worker(s)"]),
        ("polling", ["GET/s", "per GET"]),
        ("streaming", ["first token added", "sync chat.completions"]),
        ("purge", ["the longest", "load during the purge", "errors: 0", "left: 400 recent"]),
        ("fairness", ["fair: B idle", "B under A's batch", "fifo: B under", "400 answered"]),
        ("gateway_cpu", ["submit CPU us", "poll CPU us", "submits/s", "polls/s"]),
        # A PostgreSQL cluster of its own (initdb, pg_stat_statements loaded): 34 s on a busy
        # 2-core machine, the longest of these but the soak.
        ("pg_statements", ["completed/s", "tasks: cluster CPU", "calls/task", "exec us/task"]),
        (
            "soak",
            [
                "completed/s",
                "first window",
                "last full window",
                "criterion",
                "tasks.",
                "HOT",
                "last autovacuum",
            ],
        ),
    ],
)
def test_quick_run(module: str, figures: list[str]) -> None:
    before = RESULTS.read_bytes() if RESULTS.exists() else b""
    run = quick_run(module)
    for figure in figures:
        assert figure in run.stdout, run.stdout
    assert (RESULTS.read_bytes() if RESULTS.exists() else b"") == before, "a quick run recorded"
