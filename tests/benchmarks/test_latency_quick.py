"""benchmarks.latency runs end to end in its --quick form: every stage of a task's added latency
is printed for the lone tasks and the open loop, with the server processes' probe."""

from __future__ import annotations

from benchmarks.latency import STAGES
from tests.support.benchmark_runs import quick_run


def test_quick_run_prints_every_stage_and_the_probe() -> None:
    run = quick_run("latency")
    assert "lone: 5 of 5 tasks succeeded" in run.stdout, run.stdout
    assert "open loop 20/s for 1 s: 20 of 20 tasks succeeded" in run.stdout, run.stdout
    for name, _, _ in STAGES:
        assert run.stdout.count(name) == 2, run.stdout
    assert "Redis calls per task" in run.stdout
    for process in ("gateway", "worker"):
        assert f"open  {process:<8} GC: gen0" in run.stdout, run.stdout
