from pathlib import Path

import pytest

from aitasks.errors import ConfigError, UnknownModel, WrongModelKind
from aitasks.routing import ModelKind, ModelTable


def table(environ: dict[str, str] | None = None, **kwargs: object) -> ModelTable:
    return ModelTable.load(environ=environ or {}, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "queue", "kind"),
    [
        ("gemini-2.5-flash", "gemini", ModelKind.CHAT),
        ("gemini-3-ultra", "gemini", ModelKind.CHAT),  # by keyword, as the seed routes
        ("deepseek-chat", "deepseek", ModelKind.CHAT),
        ("deepseek-v4", "deepseek", ModelKind.CHAT),
        ("stable-diffusion-3", "sd", ModelKind.IMAGE),
        ("sdxl-turbo", "sd", ModelKind.IMAGE),
        ("mock-anything", "mock", ModelKind.CHAT),
        ("mock-image-big", "mock", ModelKind.IMAGE),
        ("mock-gemini", "mock", ModelKind.CHAT),  # mock- always wins
    ],
)
def test_routes_by_name(name: str, queue: str, kind: ModelKind) -> None:
    spec = table().resolve(name)
    assert (spec.name, spec.queue, spec.kind) == (name, queue, kind)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(UnknownModel) as caught:
        table().resolve("gpt-9")
    assert "gemini-2.5-flash" in caught.value.message
    assert "deepseek-chat" in caught.value.details["known_models"]


def test_kind_mismatch_is_refused() -> None:
    with pytest.raises(WrongModelKind):
        table().resolve_kind("stable-diffusion-3", ModelKind.CHAT)


def test_models_without_keys_fall_back_to_the_mock() -> None:
    spec = table().resolve("deepseek-chat")
    assert spec.provider == "openai" and spec.served_by == "mock"
    assert "deepseek-chat" in {m.name for m in table().mock_fallbacks()}


def test_a_model_with_its_key_and_provider_is_served_by_it() -> None:
    loaded = table({"DEEPSEEK_API_KEY": "k"}, implemented={"mock", "openai"})
    assert loaded.resolve("deepseek-chat").served_by == "openai"
    assert loaded.resolve("gemini-2.5-flash").served_by == "mock"  # no GEMINI_API_KEY


def test_operator_file_adds_and_overrides(tmp_path: Path) -> None:
    extra = tmp_path / "models.toml"
    extra.write_text(
        """
[models."deepseek-chat"]
kind = "chat"
provider = "mock"
queue = "cheap"
context_window = 100

[models."llama-local"]
kind = "chat"
provider = "mock"
queue = "local"

[[patterns]]
prefix = "qwen"
kind = "chat"
provider = "mock"
queue = "local"
"""
    )
    loaded = table(extra_file=extra)
    assert loaded.resolve("deepseek-chat").queue == "cheap"
    assert loaded.resolve("deepseek-chat").context_window == 100
    assert loaded.resolve("llama-local").queue == "local"
    assert loaded.resolve("qwen3-32b").queue == "local"
    assert {"cheap", "local", "gemini", "sd"} <= set(loaded.queues)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('[models.x]\nkind = "chat"\nprovider = "mock"\n', "missing 'queue'"),
        ('[models.x]\nkind = "video"\nprovider = "mock"\nqueue = "q"\n', "kind must be"),
        ('[models.x]\nkind = "chat"\nprovider = "mock"\nqueue = "q"\ncolour = 1\n', "unknown keys"),
        ("[models.x\n", "cannot read"),
        (
            '[models.x]\nkind = "chat"\nprovider = "mock"\nqueue = "q"\nsupports = ["telepathy"]\n',
            "supports names \\['telepathy'\\]",
        ),
    ],
)
def test_bad_operator_file_is_a_clear_config_error(
    tmp_path: Path, content: str, complaint: str
) -> None:
    extra = tmp_path / "models.toml"
    extra.write_text(content)
    with pytest.raises(ConfigError, match=complaint):
        table(extra_file=extra)


def test_what_a_model_supports(tmp_path: Path) -> None:
    extra = tmp_path / "models.toml"
    extra.write_text('[models.eyes]\nkind = "chat"\nprovider = "openai"\nqueue = "q"\n'
                     'supports = ["vision"]\n')  # fmt: skip
    loaded = table(extra_file=extra)
    assert loaded.resolve("eyes").features == ("vision",)
    assert loaded.resolve("deepseek-reasoner").features == ("json_object",)
    assert loaded.resolve("claude-sonnet-4-5").features == ("tools", "vision")  # its provider's
    assert loaded.resolve("stable-diffusion-3").features == ()  # an image model
    # The mock serves every structured feature natively; others what they support.
    assert loaded.resolve("claude-sonnet-4-5").native("json_schema")  # (no key: the mock)
