"""A detached task (store.tasks.detached_task, what a submit and a poll return) reads its columns
even in a fresh process whose ORM has run nothing yet: a gateway's first request is one."""

from __future__ import annotations

import subprocess
import sys

FIRST_THING = """
from aitasks.store.tasks import detached_task
task = detached_task({"id": "t1", "status": "PENDING", "result": {"text": "hi"}})
print(task.id, task.status, task.result["text"], task.error)
"""


def test_a_fresh_processs_first_detached_task_reads_its_columns() -> None:
    run = subprocess.run(
        [sys.executable, "-c", FIRST_THING], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["t1", "PENDING", "hi", "None"]
