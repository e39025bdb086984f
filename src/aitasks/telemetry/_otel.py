"""The OpenTelemetry SDK behind `aitasks.telemetry`: imported only when tracing is on.

`Tracing.from_environment` builds a tracer provider the way the SDK's own auto-configuration
would: the resource from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, the sampler from
`OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (the provider reads them), the exporters named
by `OTEL_TRACES_EXPORTER` (`otlp` over http/protobuf by default, `console`, `none`), each behind a
batch processor (`OTEL_BSP_*`); the OTLP exporter reads its endpoint, headers and timeout itself.
It becomes the global provider, so FastAPI's own request spans (which honour an incoming
`traceparent`) go the same way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from aitasks.telemetry import Attributes, AttributeValue, Kind, PlainOrAsync, log

_PROPAGATOR = TraceContextTextMapPropagator()
_KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
HTTP_PROTOBUF = "http/protobuf"


def _context_of(traceparent: str) -> Context | None:
    """A context whose span is the remote one `traceparent` names; None when it is malformed."""
    context = _PROPAGATOR.extract({"traceparent": traceparent})
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def _span_context(traceparent: str | None) -> SpanContext | None:
    context = _context_of(traceparent) if traceparent else None
    return trace.get_current_span(context).get_span_context() if context else None


def _clean(attributes: Attributes | None) -> dict[str, AttributeValue]:
    return {k: v for k, v in (attributes or {}).items() if v is not None}


class OtelSpan:
    """`telemetry.Span` over an SDK span."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    @property
    def recording(self) -> bool:
        return self._span.is_recording()

    def set(self, key: str, value: AttributeValue | None) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def update(self, attributes: Attributes) -> None:
        self._span.set_attributes(_clean(attributes))

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        self._span.add_event(name, _clean(attributes))

    def fail(self, error_type: str, message: str = "") -> None:
        self._span.set_attribute("error.type", error_type)
        self._span.set_status(Status(StatusCode.ERROR, message or None))

    def link(self, traceparent: str | None, attributes: Attributes | None = None) -> None:
        linked = _span_context(traceparent)
        if linked is not None:
            self._span.add_link(linked, _clean(attributes))


class Scope(PlainOrAsync[OtelSpan]):
    """One span from `__enter__` to `__exit__`, current in between (`telemetry.SpanScope`)."""

    __slots__ = ("_args", "_span", "_token", "_tracer")

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        attributes: Attributes | None,
        kind: Kind,
        parent: str | None,
        links: Sequence[str | None],
    ) -> None:
        self._tracer = tracer
        self._args = (name, attributes, kind, parent, links)
        self._span: trace.Span | None = None
        self._token: object = None

    def __enter__(self) -> OtelSpan:
        name, attributes, kind, parent, links = self._args
        context = _context_of(parent) if parent else None
        linked = [Link(c) for c in map(_span_context, links) if c is not None]
        span = self._tracer.start_span(
            name, context=context, kind=_KINDS[kind], attributes=_clean(attributes), links=linked
        )
        self._span = span
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return OtelSpan(span)

    def __exit__(self, *exc_info: object) -> None:
        span = self._span
        assert span is not None
        exc = exc_info[1]  # (type, value, traceback)
        if isinstance(exc, asyncio.CancelledError):
            span.set_attribute("aitasks.cancelled", True)
        elif isinstance(exc, BaseException) and not isinstance(exc, GeneratorExit):
            error_type = getattr(exc, "error_type", None) or type(exc).__qualname__
            span.set_attribute("error.type", str(error_type))
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)[:500] or None))
        otel_context.detach(self._token)  # type: ignore[arg-type]
        span.end()


class Tracing:
    """The tracing `telemetry.configure` sets up: spans of one SDK tracer provider."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("aitasks")

    @classmethod
    def from_environment(cls, service_name: str, *, version: str = "") -> Tracing:
        """The provider the `OTEL_*` variables describe, made the global one."""
        tracing = cls.with_exporters(
            exporters_from(os.environ), service_name, version=version, batch=True
        )
        trace.set_tracer_provider(tracing.provider)
        return tracing

    @classmethod
    def with_exporters(
        cls,
        exporters: Sequence[SpanExporter],
        service_name: str,
        *,
        version: str = "",
        batch: bool = True,
    ) -> Tracing:
        """A provider sending to `exporters` (batched, or one by one for tests), not global."""
        env = os.environ
        attributes: dict[str, str] = {}
        named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""
        )
        if not named:
            attributes[SERVICE_NAME] = service_name
        if version:
            attributes[SERVICE_VERSION] = version
        provider = TracerProvider(resource=Resource.create(attributes))
        for exporter in exporters:
            processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
            provider.add_span_processor(processor)
        return cls(provider)

    def span(
        self,
        name: str,
        attributes: Attributes | None,
        kind: Kind,
        parent: str | None,
        links: Sequence[str | None],
    ) -> Scope:
        return Scope(self.tracer, name, attributes, kind, parent, links)

    def current(self) -> OtelSpan:
        return OtelSpan(trace.get_current_span())

    def traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    def log_fields(self) -> dict[str, str]:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return {}
        return {
            "trace_id": trace.format_trace_id(context.trace_id),
            "span_id": trace.format_span_id(context.span_id),
        }

    def flush(self) -> None:
        self.provider.force_flush(timeout_millis=5000)


def exporters_from(env: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters `OTEL_TRACES_EXPORTER` names (default `otlp`)."""
    exporters: list[SpanExporter] = []
    for name in (env.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(","):
        name = name.strip()
        if name in ("", "none"):
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            exporters.append(_otlp_exporter(env))
        else:
            log.warning("OTEL_TRACES_EXPORTER names %r, which aitasks does not know: skipped", name)
    return exporters


def _otlp_protocol(env: Mapping[str, str]) -> str:
    return (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or HTTP_PROTOBUF
    ).strip()


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = _otlp_protocol(env)
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            log.warning(
                "OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc; "
                "sending over http/protobuf instead"
            )
        else:
            exporter: SpanExporter = GrpcExporter()
            return exporter
    elif protocol != HTTP_PROTOBUF:
        log.warning("OTLP protocol %r is not supported; sending over http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def destination(env: Mapping[str, str]) -> str:
    """Where spans go, in words, for the start-up log line."""
    names = (env.get("OTEL_TRACES_EXPORTER") or "otlp").lower()
    if "otlp" not in names:
        return names
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
        (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318").rstrip("/")
        + "/v1/traces"
    )
    return f"{names} ({_otlp_protocol(env)}) at {endpoint}"
