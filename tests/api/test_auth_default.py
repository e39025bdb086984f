"""Auth is on wherever the app is built: `create_app()` served by plain `uvicorn`/`gunicorn` (no CLI
to say what address it listens on) demands a key unless the operator says `AITASKS_AUTH=off`; the
CLI turns it off only for an address that is provably loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from aitasks.api.app import create_app
from aitasks.config import Settings
from aitasks.store.database import Database
from aitasks.store.migrate import upgrade

# What would make the app's settings anything but the defaults.
SETTING_VARIABLES = ("AITASKS_AUTH", "DATABASE_URL", "DB_HOST", "AITASKS_DATA_DIR")
CHAT = {"prompt": "hello", "model": "mock-chat", "conversation_id": None}


@pytest.fixture
def nothing_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no `.env` and none of the variables set: `Settings()` is the
    defaults, its SQLite under `./.aitasks` here."""
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def _answer(
    settings: Settings | None, headers: dict[str, str] | None = None
) -> tuple[int, int]:
    """The statuses `POST /v1/chat/completions` and `GET /openai/v1/models` get from
    `create_app(settings)`, its lifespan run."""
    db = Database((settings or Settings()).sqlalchemy_url)
    await upgrade(db)
    await db.dispose()
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.post("/v1/chat/completions", json=CHAT, headers=headers or {})
        openai = await client.get("/openai/v1/models", headers=headers or {})
    return response.status_code, openai.status_code


@pytest.mark.usefixtures("nothing_set")
async def test_an_app_built_with_nothing_set_demands_a_key() -> None:
    assert Settings().auth_enabled
    assert await _answer(Settings()) == (401, 401)
    # As `uvicorn aitasks.api.app:create_app --factory` builds it: no settings at all.
    assert await _answer(None) == (401, 401)
    assert await _answer(None, {"authorization": "Bearer ait_nope_nope"}) == (401, 401)


@pytest.mark.usefixtures("nothing_set")
async def test_auth_is_off_only_when_the_operator_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITASKS_AUTH", "off")
    assert not Settings().auth_enabled
    assert await _answer(Settings()) == (202, 200)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_the_cli_binding_loopback_turns_auth_off(host: str) -> None:
    assert not Settings(_env_file=None).auth_for_host(host).auth_enabled  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "host",
    [
        "127.attacker.example",  # a name: it resolves wherever its owner likes
        "127.0.0.1.nip.io",
        "localhost.attacker.example",
        "0.0.0.0",  # every address
        "::",
        "192.168.1.10",
        "gateway.internal",
        "",
    ],
)
def test_anything_not_provably_loopback_keeps_auth_on(host: str) -> None:
    assert Settings(_env_file=None).auth_for_host(host).auth_enabled  # type: ignore[call-arg]


def test_the_operator_overrides_the_address() -> None:
    on = Settings(_env_file=None, auth=True)  # type: ignore[call-arg]
    off = Settings(_env_file=None, auth=False)  # type: ignore[call-arg]
    assert on.auth_for_host("127.0.0.1").auth_enabled
    assert not off.auth_for_host("0.0.0.0").auth_enabled
