"""Fallbacks, strict models and the model table's checks, on the embedded default."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitasks.config import Settings
from aitasks.errors import ConfigError
from aitasks.services import load_models
from tests.support.embedded import EmbeddedFactory, finished
from tests.support.processes import run_cli, service_env
from tests.support.services import query

TABLE = """
[models."flaky-chat"]
kind = "chat"
provider = "mock"
queue = "mock"
max_attempts = 2
fallbacks = ["backup-chat", "steady-chat"]

[models."backup-chat"]
kind = "chat"
provider = "mock"
queue = "mock"
max_attempts = 1

[models."steady-chat"]
kind = "chat"
provider = "mock"
queue = "mock"
"""


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(TABLE)
    return path


async def test_a_model_that_fails_for_good_falls_back_in_order(
    embedded: EmbeddedFactory, table: Path
) -> None:
    async with embedded(models_file=table) as client:
        prompt = "hello [fail-on:flaky-chat] [fail-on:backup-chat]"
        accepted = await client.post(
            "/v1/chat/completions", json={"prompt": prompt, "model": "flaky-chat"}
        )
        task = await finished(client, accepted.json()["task_id"])
    assert task["status"] == "SUCCESS"
    assert task["model"] == "flaky-chat" and task["served_model"] == "steady-chat"
    assert task["attempts"] == 4  # two of flaky-chat, one of backup-chat, one of steady-chat


async def test_when_every_fallback_fails_the_last_error_is_kept(
    embedded: EmbeddedFactory, table: Path
) -> None:
    async with embedded(models_file=table) as client:
        prompt = "[fail-on:flaky-chat] [fail-on:backup-chat] [fail-on:steady-chat]"
        accepted = await client.post(
            "/v1/chat/completions", json={"prompt": prompt, "model": "flaky-chat"}
        )
        task = await finished(client, accepted.json()["task_id"])
    assert task["status"] == "FAILED"
    assert task["error"]["message"] == "mock provider: 503 from steady-chat"


def test_a_fallback_must_exist_and_be_of_the_same_kind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    model = '[models.a]\nkind = "chat"\nprovider = "mock"\nqueue = "q"\n'
    bad.write_text(model + 'fallbacks = ["nope"]\n')
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        load_models(Settings(_env_file=None, models_file=bad))  # type: ignore[call-arg]
    bad.write_text(model + 'fallbacks = ["mock-image"]\n')
    with pytest.raises(ConfigError, match=r"'mock-image' is not a chat model"):
        load_models(Settings(_env_file=None, models_file=bad))  # type: ignore[call-arg]


def test_strict_models_refuse_to_start_without_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DEEPSEEK_API_KEY"):
        load_models(Settings(_env_file=None, strict_models=True))  # type: ignore[call-arg]
    started = run_cli(
        ["worker"],
        service_env(AITASKS_STRICT_MODELS="1", AITASKS_DATA_DIR=str(tmp_path)),
        tmp_path,
    )
    assert started.returncode == 2
    assert "AITASKS_STRICT_MODELS is on" in started.stderr and "GEMINI_API_KEY" in started.stderr


async def test_turns_that_no_longer_fit_are_summarised_not_lost(
    embedded: EmbeddedFactory, tmp_path: Path, settings: Settings
) -> None:
    table = tmp_path / "summary.toml"
    table.write_text(
        '[models."short-memory"]\nkind = "chat"\nprovider = "mock"\nqueue = "mock"\n'
        'context_window = 400\nsummary_model = "mock-chat"\n'
    )
    async with embedded(models_file=table) as client:
        conversation = None
        for n in range(1, 7):
            body = {"prompt": f"turn {n}: " + "words " * 30, "model": "short-memory",
                    "conversation_id": conversation}  # fmt: skip
            accepted = (await client.post("/v1/chat/completions", json=body)).json()
            conversation = accepted["conversation_id"]
            assert (await finished(client, accepted["task_id"]))["status"] == "SUCCESS"
    ((summary, through),) = query(
        settings.sqlalchemy_url,
        f"SELECT summary, summary_turn FROM conversations WHERE id = '{conversation}'",
    )
    # The mock summarised: its reply names the instruction it was given.
    assert summary.startswith('Mock reply to "Summarise the conversation below')
    assert 1 <= through < 6
