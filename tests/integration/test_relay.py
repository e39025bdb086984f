"""End to end: a worker's `openai` provider calls another aitasks gateway's /openai/v1, streamed."""

from __future__ import annotations

from pathlib import Path

import httpx

from aitasks.providers.base import ChatMessage
from aitasks.providers.mock import mock_reply
from tests.support.flows import wait_for_tasks
from tests.support.processes import Process, free_port, service_env, wait_until_up
from tests.support.sse import read_events


def start_up(folder: Path, **settings: str) -> tuple[Process, str]:
    folder.mkdir()
    port = free_port()
    process = Process(["up", "--port", str(port)], service_env(**settings), folder)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_up(base_url, process)
    return process, base_url


def test_a_model_served_by_another_gateway_over_the_openai_protocol(tmp_path: Path) -> None:
    upstream, upstream_url = start_up(tmp_path / "upstream", AITASKS_MOCK_LATENCY_MS="400")
    table = tmp_path / "models.toml"
    table.write_text(
        f"""
[models."relay-chat"]
kind = "chat"
provider = "openai"
queue = "relay"
base_url = "{upstream_url}/openai/v1"
upstream_model = "mock-chat"
api_key_env = "RELAY_KEY"
"""
    )
    relay, relay_url = start_up(tmp_path / "relay", AITASKS_MODELS=str(table), RELAY_KEY="anything")
    try:
        with httpx.Client(base_url=relay_url, timeout=30) as client:
            listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
            assert listed["relay-chat"]["served_by"] == "openai"

            first = client.post(
                "/v1/chat/completions", json={"prompt": "Hello", "model": "relay-chat"}
            ).json()
            wait_for_tasks(client, [first["task_id"]])
            body = {"prompt": "And now?", "model": "relay-chat", "stream": True,
                    "conversation_id": first["conversation_id"]}  # fmt: skip
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                events = list(read_events(response))
        done = events[-1].data
        deltas = [e.data["delta"] for e in events if e.event == "delta"]
        assert done["status"] == "SUCCESS" and done["provider"] == "openai"
        assert len(deltas) > 3 and "".join(deltas) == done["result"]
        # The upstream's mock saw the relay's conversation history as its context.
        first_reply = mock_reply([ChatMessage("user", "Hello")])
        expected = mock_reply(
            [ChatMessage("user", "Hello"), ChatMessage("assistant", first_reply),
             ChatMessage("user", "And now?")]
        )  # fmt: skip
        assert done["result"] == expected
        assert done["usage"]["completion_tokens"] > 0
    finally:
        relay.stop()
        upstream.stop()
