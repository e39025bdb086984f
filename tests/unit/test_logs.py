import json
import logging
from collections.abc import Iterator

import pytest

from aitasks import logs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_json_lines_carry_the_task_they_are_about(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    log = logging.getLogger("aitasks.test")
    log.info("outside")
    with logs.task_context(task_id="t1", queue="mock"), logs.task_context(model="m", attempt=1):
        logs.set_attempt(2)
        log.warning("inside %s", "a task")
    outside, inside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert outside["message"] == "outside" and "task_id" not in outside
    assert inside["message"] == "inside a task" and inside["level"] == "warning"
    assert (inside["task_id"], inside["queue"], inside["model"], inside["attempt"]) == (
        "t1", "mock", "m", 2,
    )  # fmt: skip


def test_text_lines_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "text")
    with logs.task_context(task_id="t2"):
        logging.getLogger("aitasks.test").info("hello")
    assert capsys.readouterr().err.rstrip().endswith("aitasks.test: hello [task_id=t2]")
