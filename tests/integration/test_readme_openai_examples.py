"""The README's examples of the OpenAI Responses API and the Conversations API run as written,
through the official SDK, against a gateway and a worker on PostgreSQL and Redis (only the
address is the test's)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import Process, free_port, wait_until_up
from tests.support.readme import python_blocks
from tests.support.services import upgraded_stack

# What each section's examples print, in part: a sign they did what they say.
PRINTED = {
    "OpenAI Responses API": ["completed Mock reply", "cancelled", "message user", "Mock reply to"],
    "Conversations API": ["message", "function_call_output"],
}


@pytest.mark.parametrize("heading", sorted(PRINTED))
def test_the_readmes_examples_run(tmp_path: Path, heading: str) -> None:
    blocks = python_blocks(heading)
    assert blocks, heading
    with upgraded_stack(tmp_path, AITASKS_WEBHOOK_ALLOW_PRIVATE="true") as env:
        port = free_port()
        worker = Process(["worker"], env, tmp_path)
        gateway = Process(["api", "--port", str(port)], env, tmp_path)
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_up(base_url, gateway)
            worker.wait_for_log("on queues")
            names: dict[str, Any] = {}
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                for block in blocks:  # one after another, as a reader runs them
                    code = block.replace("http://localhost:8000", base_url)
                    exec(compile(code, f"README.md ({heading})", "exec"), names)
        finally:
            gateway.stop()
            worker.stop()
    for expected in PRINTED[heading]:
        assert expected in printed.getvalue(), (expected, printed.getvalue())
