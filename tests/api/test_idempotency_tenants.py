"""Idempotency keys are scoped by tenant with a structure that cannot collide: tenant `acme` with
key `dev/k1` and tenant `acme/dev` with key `k1` are two keys, on both stores, with and without
`"stream": true` (a stream never carries another tenant's task)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.keyed_app import MODES, keyed_app

CHAT = "/v1/chat/completions"


def done_event(stream: str) -> dict[str, Any]:
    """The data of a stream's `done` event."""
    for block in stream.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("event") == "done":
            return dict(json.loads(lines["data"]))
    raise AssertionError(f"no done event in {stream!r}")


@pytest.mark.parametrize("mode", MODES)
async def test_idempotency_keys_of_two_tenants_never_collide(mode: str, tmp_path: Path) -> None:
    async with keyed_app(mode, tmp_path, worker=True) as app:
        acme = await app.key("acme")
        dev = await app.key("acme-dev", tenant="acme/dev")
        for stream in (False, True):
            body = {"prompt": f"acme's plan {stream}", "model": "mock-chat", "stream": stream}
            first = await app.http.post(
                CHAT, json=body, headers={**acme, "Idempotency-Key": f"dev/k{stream}"}
            )
            other = await app.http.post(
                CHAT, json=body, headers={**dev, "Idempotency-Key": f"k{stream}"}
            )
            again = await app.http.post(
                CHAT, json=body, headers={**acme, "Idempotency-Key": f"dev/k{stream}"}
            )
            # A stream answers 200; a plain submit 202 for a new task, 200 for a repeat.
            assert first.status_code == other.status_code == (200 if stream else 202)
            if stream:
                mine, theirs = done_event(first.text), done_event(other.text)
                assert theirs["task_id"] != mine["task_id"]
                assert done_event(again.text)["task_id"] == mine["task_id"]
                # Each is its own tenant's task.
                path = f"/v1/tasks/{theirs['task_id']}"
                assert (await app.http.get(path, headers=acme)).status_code == 404
                assert (await app.http.get(path, headers=dev)).status_code == 200
            else:
                assert other.json()["task_id"] != first.json()["task_id"]
                assert again.status_code == 200
                assert again.json()["task_id"] == first.json()["task_id"]
        assert await app.count("SELECT count(*) FROM tasks") == 4
        assert await app.count("SELECT count(*) FROM idempotency_keys") == 4
