"""Tracing with OpenTelemetry, or nothing at all.

Configured the OpenTelemetry way, by the standard variables (`OTEL_TRACES_EXPORTER`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, ...), with the SDK and
the OTLP exporter of the optional extra `aitasks[otel]`. When those variables ask for no traces,
`configure` loads nothing, and every function here is a look at one global and a shared object that
does nothing: the hot path calls them without paying for tracing it does not do, and without
importing any OpenTelemetry module for it (the SDK lives in `_otel.py`, imported only here).

A task's trace context travels as a W3C `traceparent` string: `traceparent()` gives the current
one, the gateway stores it with the task and puts it in the queue entry, and the worker passes it
back as a span's `parent=` (or to `Span.link`, where one task's work spans many requests).

Prompt and reply text stay out of spans unless `AITASKS_TRACE_CONTENT=1`, as the GenAI semantic
conventions advise: `content_enabled()` says whether to record it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Generic, Literal, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from aitasks.telemetry._otel import Tracing

log = logging.getLogger(__name__)

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float]
Attributes = Mapping[str, AttributeValue | None]
Kind = Literal["internal", "server", "client", "producer", "consumer"]

P = ParamSpec("P")
R = TypeVar("R")
Entered = TypeVar("Entered")

# The values of AITASKS_TRACE_CONTENT (and OTEL_SDK_DISABLED) that mean yes.
_YES = frozenset({"1", "true", "yes", "on"})
# A stored trace context that names a trace to link to, not a parent (`as_link`).
LINK_PREFIX = "link "


class Span(Protocol):
    """What code may do to a span: the real one's, or nothing when tracing is off."""

    @property
    def recording(self) -> bool:
        """Whether anything set on it is kept (False when tracing is off or sampled out)."""

    def set(self, key: str, value: AttributeValue | None) -> None:
        """Set an attribute; None sets nothing."""

    def update(self, attributes: Attributes) -> None:
        """Set several attributes; None values are skipped."""

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        """Record a moment in the span's life."""

    def fail(self, error_type: str, message: str = "") -> None:
        """Mark the span failed, with the error's type (`error.type`) and a message."""

    def link(self, traceparent: str | None, attributes: Attributes | None = None) -> None:
        """Link the span to another trace's span (a `traceparent`); None links nothing."""


class SpanScope(Protocol):
    """A span from its start to its end: a context manager, plain or async, giving the span.
    (`*exc_info`: the exception's type, value and traceback, as `with` passes them.)"""

    def __enter__(self) -> Span: ...

    def __exit__(self, *exc_info: object) -> None: ...

    async def __aenter__(self) -> Span: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class PlainOrAsync(Generic[Entered]):
    """A context manager for `with` and `async with` alike: the async form runs the plain one
    (starting and ending a span waits for nothing)."""

    __slots__ = ()

    def __enter__(self) -> Entered:
        raise NotImplementedError

    def __exit__(self, *exc_info: object) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Entered:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)


class _Nothing(PlainOrAsync["_Nothing"]):
    """The span, and the scope of a span, when tracing is off: one shared object doing nothing."""

    __slots__ = ()

    recording = False

    def set(self, key: str, value: AttributeValue | None) -> None:
        return None

    def update(self, attributes: Attributes) -> None:
        return None

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        return None

    def fail(self, error_type: str, message: str = "") -> None:
        return None

    def link(self, traceparent: str | None, attributes: Attributes | None = None) -> None:
        return None

    def __enter__(self) -> _Nothing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


NOTHING = _Nothing()

# The tracing `configure` set up (`_otel.Tracing`), or None: off.
_backend: Tracing | None = None
_content = False


def requested(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: `OTEL_TRACES_EXPORTER` names an exporter other
    than `none`, or (it unset, the OpenTelemetry default being OTLP) an OTLP endpoint is given;
    and `OTEL_SDK_DISABLED` is not true."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _YES:
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return any(name.strip() not in ("", "none") for name in exporters.split(","))
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure(service_name: str, *, version: str = "") -> bool:
    """Set up tracing for this process when the environment asks for it (see `requested`);
    whether it is on. `service_name` is the default `service.name` (`OTEL_SERVICE_NAME` wins).
    The first call decides: a worker inside `aitasks up` shares the gateway's tracing."""
    if _backend is not None:
        return True
    if not requested(os.environ):
        return False
    try:
        from aitasks.telemetry import _otel
    except ImportError as exc:
        log.warning(
            "traces were asked for (OTEL_*), but the OpenTelemetry SDK is not installed "
            "(pip install 'aitasks[otel]'): tracing stays off (%s)",
            exc,
        )
        return False
    install(_otel.Tracing.from_environment(service_name, version=version))
    log.info("tracing on: spans go to %s", _otel.destination(os.environ))
    return True


def install(backend: Tracing) -> None:
    """Use `backend` for every span from now on (`configure` does; tests give their own)."""
    global _backend, _content
    _backend = backend
    _content = os.environ.get("AITASKS_TRACE_CONTENT", "").strip().lower() in _YES


def uninstall() -> None:
    """Tracing off again (for tests)."""
    global _backend, _content
    _backend, _content = None, False


def enabled() -> bool:
    """Whether tracing is on in this process."""
    return _backend is not None


def content_enabled() -> bool:
    """Whether prompt and reply text may go into spans (`AITASKS_TRACE_CONTENT=1`)."""
    return _content


def span(
    name: str,
    attributes: Attributes | None = None,
    *,
    kind: Kind = "internal",
    parent: str | None = None,
    links: Sequence[str | None] = (),
) -> SpanScope:
    """A span named `name`, the current one's child, or `parent`'s (a `traceparent`) when given;
    use it as `with span(...) as s:` or `async with`. An exception leaving it marks it failed
    (`error.type` is an `AITasksError`'s type, else the exception's class)."""
    if _backend is None:
        return NOTHING
    return _backend.span(name, attributes, kind, parent, links)


def current() -> Span:
    """The span in effect here (one that does nothing when there is none)."""
    if _backend is None:
        return NOTHING
    return _backend.current()


def traceparent() -> str | None:
    """The current span's context as a W3C `traceparent`; None when tracing is off or no span
    is in effect."""
    if _backend is None:
        return None
    return _backend.traceparent()


def as_link(traceparent: str | None) -> str | None:
    """What to store with a task whose runs should start traces of their own, linked to this
    context rather than its children (a batch's tasks: one trace per task, each linked to the
    batch's request, not one trace of fifty thousand)."""
    return LINK_PREFIX + traceparent if traceparent else None


def parent_and_links(stored: str | None) -> tuple[str | None, tuple[str, ...]]:
    """A stored trace context as a span's `parent` and `links` (see `as_link`)."""
    if stored and stored.startswith(LINK_PREFIX):
        return None, (stored.removeprefix(LINK_PREFIX),)
    return stored, ()


def headers() -> dict[str, str]:
    """Headers that carry the current trace to another service (empty when there is none)."""
    parent = traceparent()
    return {"traceparent": parent} if parent else {}


def log_fields() -> dict[str, str]:
    """`trace_id` and `span_id` of the current span, for log lines (empty when none)."""
    if _backend is None:
        return {}
    return _backend.log_fields()


def flush() -> None:
    """Send the spans ended so far (at shutdown; a process that exits normally also does)."""
    if _backend is not None:
        _backend.flush()


def traced(
    name: str, *, kind: Kind = "internal"
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Run an async function inside a span named `name` (nothing more when tracing is off)."""

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if _backend is None:
                return await function(*args, **kwargs)
            with _backend.span(name, None, kind, None, ()):
                return await function(*args, **kwargs)

        return wrapper

    return decorate
