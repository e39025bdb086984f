"""Model name → queue and provider: the model table.

The table is the built-in `models.toml` merged with the operator's file (`AITASKS_MODELS`). Exact
entries come first; a name not in the table is routed by the first pattern it matches, as the
seed routed by keywords (`gemini`, `deepseek`, `sd`). Anything else is an unknown model.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from aitasks.errors import ConfigError, InvalidRequest, UnknownModel, WrongModelKind

log = logging.getLogger(__name__)

MOCK_PROVIDER = "mock"

# What a name routed by a rule may look like. Such a name is the caller's own text and ends up in
# provider URLs and request bodies, so it gets a strict alphabet: letters, digits and `._:-`, with
# `/` only between such segments (`org/model`, as OpenAI-compatible hubs name models). No dot
# segments, `?`, `#`, `%` or spaces: nothing that could steer a URL.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._:-]*"  # starts with a letter or digit: never `.` or `..`
RULED_NAME = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*", re.ASCII)
RULED_NAME_MAX = 128
# The metrics label of a model name that matches no rule (it is refused, but may still be counted).
OTHER_MODELS_LABEL = "other"


class ModelKind(StrEnum):
    CHAT = "chat"
    IMAGE = "image"


# What a chat model can be asked for beyond text: calling tools, reading images, and structured
# output served natively (`json_object`, `json_schema`; without them the worker instructs the model
# and validates its reply). The table's `supports = [...]` lists a model's; else its provider's.
FEATURES = ("tools", "vision", "json_object", "json_schema")
PROVIDER_FEATURES: dict[str, tuple[str, ...]] = {
    MOCK_PROVIDER: FEATURES,
    "openai": FEATURES,
    "gemini": FEATURES,
    "anthropic": ("tools", "vision"),
}
# Providers that fetch a remote image URL themselves; the others are sent only this service's
# files (the worker never fetches a URL a tenant gave).
FETCHES_IMAGE_URLS = frozenset({"openai", "anthropic"})


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model as the operator configured it, plus which provider will actually serve it."""

    name: str
    kind: ModelKind
    provider: str
    queue: str
    upstream_model: str | None = None
    base_url: str | None = None
    base_url_env: str | None = None
    api_key_env: str | None = None
    context_window: int = 32_000
    timeout_s: float = 120.0
    max_attempts: int = 3
    # Tried in order when this model fails for good.
    fallbacks: tuple[str, ...] = ()
    # Calls a minute across all workers (shared in Redis); None: no limit.
    rpm: int | None = None
    # Calls in flight at once in one worker process; None: no limit but the worker's own.
    concurrency: int | None = None
    # A local model folder, for providers that run the model in the worker (diffusers).
    model_path: str | None = None
    # Image models: the size made when a request names none, as "WIDTHxHEIGHT".
    size: str = "512x512"
    # A chat model that summarises turns dropped from this model's window, instead of losing them.
    summary_model: str | None = None
    # What it supports of `FEATURES`; None: what its provider's models do.
    supports: tuple[str, ...] | None = None
    # Its earlier replies' reasoning is sent back as context (for a model that asks for it).
    reasoning_in_context: bool = False
    # Seconds its tasks may wait to start when the request and its key name no deadline; after
    # that they end EXPIRED without a call. None: they wait as long as it takes.
    expires_after: float | None = None
    served_by: str = MOCK_PROVIDER

    @property
    def uses_mock(self) -> bool:
        return self.served_by == MOCK_PROVIDER

    @property
    def features(self) -> tuple[str, ...]:
        """What the model supports (`FEATURES`): the table's word, else its provider's models'."""
        if self.kind is not ModelKind.CHAT:
            return ()
        if self.supports is not None:
            return self.supports
        return PROVIDER_FEATURES.get(self.provider, ())

    def native(self, feature: str) -> bool:
        """Whether the provider that serves it now takes `feature` itself (the mock takes all)."""
        return self.uses_mock or feature in self.features


@dataclass(frozen=True, slots=True)
class Pattern:
    """A routing rule for names not in the table: a prefix, or any of several substrings."""

    template: ModelSpec
    prefix: str | None = None
    contains: tuple[str, ...] = field(default_factory=tuple)

    def matches(self, name: str) -> bool:
        lowered = name.lower()
        if self.prefix is not None and lowered.startswith(self.prefix):
            return True
        return any(part in lowered for part in self.contains)


_SPEC_KEYS = {
    "kind", "provider", "queue", "upstream_model", "base_url", "base_url_env", "api_key_env",
    "context_window", "timeout_s", "max_attempts", "fallbacks", "rpm", "concurrency", "model_path",
    "size", "summary_model", "supports", "reasoning_in_context", "expires_after",
}  # fmt: skip


def _spec_from_toml(name: str, raw: Mapping[str, Any], where: str) -> ModelSpec:
    unknown = set(raw) - _SPEC_KEYS - {"prefix", "contains"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    for required in ("kind", "provider", "queue"):
        if required not in raw:
            raise ConfigError(f"{where}: missing {required!r}")
    try:
        kind = ModelKind(raw["kind"])
    except ValueError:
        raise ConfigError(f"{where}: kind must be 'chat' or 'image', not {raw['kind']!r}") from None
    if "size" in raw and not re.fullmatch(r"\d{2,4}x\d{2,4}", str(raw["size"])):
        raise ConfigError(f"{where}: size must look like 512x512, not {raw['size']!r}")
    values = {key: raw[key] for key in _SPEC_KEYS if key in raw and key != "kind"}
    if "fallbacks" in values:
        values["fallbacks"] = tuple(values["fallbacks"])
    if "supports" in values:
        unknown_features = set(values["supports"]) - set(FEATURES)
        if unknown_features:
            raise ConfigError(
                f"{where}: supports names {sorted(unknown_features)}; the features are "
                f"{list(FEATURES)}"
            )
        values["supports"] = tuple(values["supports"])
    return ModelSpec(name=name, kind=kind, **values)


class ModelTable:
    """The merged model table with each model's effective provider decided once, at start-up."""

    def __init__(
        self,
        models: Iterable[ModelSpec],
        patterns: Iterable[Pattern],
        *,
        implemented: Collection[str] = (MOCK_PROVIDER,),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._implemented = set(implemented)
        self._env = env
        self.models: dict[str, ModelSpec] = {m.name: self._decide(m) for m in models}
        self.patterns = [replace(p, template=self._decide(p.template)) for p in patterns]

    @classmethod
    def load(
        cls,
        extra_file: Path | None = None,
        *,
        implemented: Collection[str] = (MOCK_PROVIDER,),
        environ: Mapping[str, str] | None = None,
    ) -> ModelTable:
        """Read the built-in table, then the operator's file on top of it."""
        builtin = resources.files("aitasks").joinpath("models.toml").read_text("utf-8")
        models, patterns = _parse(tomllib.loads(builtin), "built-in models.toml")
        if extra_file is not None:
            try:
                data = tomllib.loads(Path(extra_file).read_text("utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read model table {extra_file}: {exc}") from exc
            extra_models, extra_patterns = _parse(data, str(extra_file))
            models.update(extra_models)
            # The operator's rules are tried before the built-in ones.
            patterns = extra_patterns + patterns
        return cls(models.values(), patterns, implemented=implemented, environ=environ)

    def _decide(self, spec: ModelSpec) -> ModelSpec:
        """Pick the provider that will serve `spec`: its own, or the mock when it cannot run."""
        if spec.provider == MOCK_PROVIDER:
            return replace(spec, served_by=MOCK_PROVIDER)
        has_key = spec.api_key_env is None or bool(self._env.get(spec.api_key_env))
        has_url = spec.base_url_env is None or bool(self._env.get(spec.base_url_env))
        has_files = spec.model_path is None or Path(spec.model_path).is_dir()
        if spec.provider in self._implemented and has_key and has_url and has_files:
            return replace(spec, served_by=spec.provider)
        return replace(spec, served_by=MOCK_PROVIDER)

    def check_fallbacks(self) -> None:
        """Every fallback and summary model names a known model of the same kind."""
        for spec in [*self.models.values(), *(p.template for p in self.patterns)]:
            helpers = [*spec.fallbacks, *([spec.summary_model] if spec.summary_model else [])]
            for name in helpers:
                try:
                    other = self.resolve(name)
                except UnknownModel:
                    raise ConfigError(f"model {spec.name!r}: unknown model {name!r}") from None
                if other.kind is not spec.kind:
                    raise ConfigError(f"model {spec.name!r}: {name!r} is not a {spec.kind} model")

    def needs(self, spec: ModelSpec) -> str:
        """What a model served by the mock lacks, in words, for the operator."""
        if spec.provider not in self._implemented:
            return f"provider {spec.provider!r}, not installed"
        if spec.api_key_env and not self._env.get(spec.api_key_env):
            return spec.api_key_env
        if spec.base_url_env and not self._env.get(spec.base_url_env):
            return spec.base_url_env
        return f"the model folder {spec.model_path}"

    def mock_fallbacks(self) -> list[ModelSpec]:
        """Models configured for a real provider that the mock serves instead."""
        return [m for m in self.models.values() if m.provider != MOCK_PROVIDER and m.uses_mock]

    @property
    def known_names(self) -> list[str]:
        return sorted(self.models)

    @property
    def queues(self) -> list[str]:
        names = {m.queue for m in self.models.values()} | {p.template.queue for p in self.patterns}
        return sorted(names)

    def resolve(self, name: str) -> ModelSpec:
        """The spec for a model name, or `UnknownModel` listing the known names. A name routed by
        a rule must also be a well-formed model name (`RULED_NAME`), else `InvalidRequest`."""
        spec = self.models.get(name)
        if spec is not None:
            return spec
        pattern = self._rule_for(name)
        if pattern is None:
            raise UnknownModel(name, self.known_names)
        if len(name) > RULED_NAME_MAX or not RULED_NAME.fullmatch(name):
            raise InvalidRequest(
                f"model name {name!r} is not well-formed: up to {RULED_NAME_MAX} letters, digits "
                "and '._:-', with '/' only between such parts",
                param="model",
            )
        return replace(pattern.template, name=name)

    def _rule_for(self, name: str) -> Pattern | None:
        return next((p for p in self.patterns if p.matches(name)), None)

    def label_of(self, name: str) -> str:
        """The bounded name a model is counted under in metrics: its own when it is in the table,
        else the rule that routes it (a caller can make up any number of names), else "other"."""
        if name in self.models:
            return name
        pattern = self._rule_for(name)
        return pattern.template.name if pattern is not None else OTHER_MODELS_LABEL

    def resolve_kind(self, name: str, kind: ModelKind) -> ModelSpec:
        """Like `resolve`, but refuse a model of the other kind (a chat model asked for images)."""
        spec = self.resolve(name)
        if spec.kind is not kind:
            raise WrongModelKind(
                f"model {name!r} is a {spec.kind} model; it cannot serve {kind} requests",
                param="model",
            )
        return spec


def _parse(data: Mapping[str, Any], where: str) -> tuple[dict[str, ModelSpec], list[Pattern]]:
    models = {
        name: _spec_from_toml(name, raw, f"{where}: models.{name}")
        for name, raw in data.get("models", {}).items()
    }
    patterns: list[Pattern] = []
    for index, raw in enumerate(data.get("patterns", [])):
        label = f"{where}: patterns[{index}]"
        prefix, contains = raw.get("prefix"), tuple(raw.get("contains", ()))
        if prefix is None and not contains:
            raise ConfigError(f"{label}: needs 'prefix' or 'contains'")
        template = _spec_from_toml(prefix or contains[0], raw, label)
        patterns.append(
            Pattern(
                template=template,
                prefix=prefix.lower() if prefix else None,
                contains=tuple(c.lower() for c in contains),
            )
        )
    return models, patterns
