"""OpenTelemetry spans through the API's global tracer provider and propagator.

saga-worker depends on the OpenTelemetry API alone. Its spans (one per applied saga
write, one per participant command, one around each handler call) go to the tracer
provider the process set globally, so they join the spans of the user's own
instrumentation and of instrumented libraries; with none set they are no-ops. Each
span's parent is extracted, by the global propagator (`OTEL_PROPAGATORS`), from the
W3C `traceparent` the saga's start message carried: one order's saga is one trace,
under the span that produced the order. The headers themselves are passed on
unchanged whether anything records or not.

A worker started by `saga-worker` (or `run_orchestrator`, ...) in a process with no
provider set sets one up from the standard variables when they ask for export and
the SDK is installed (`saga-worker[otel]`, `saga-worker[otel-grpc]`):

- `OTEL_TRACES_EXPORTER`: `otlp` (the default once an OTLP endpoint is set),
  `console`, `none`, or a comma-separated list;
- `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`:
  `http/protobuf` (the default) or `grpc`;
- `OTEL_SDK_DISABLED=true` sets nothing up;
- everything else (endpoint, headers, certificates, timeout, compression,
  `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
  `OTEL_BSP_*`) is read by the SDK and its exporters themselves.

A provider set before (by the user's code or `opentelemetry-instrument`) is left alone.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context

from saga_worker._version import __version__

log = logging.getLogger(__name__)

Attributes = Mapping[str, str | int]

HTTP = "http/protobuf"
GRPC = "grpc"
_OTLP_MODULES = {
    HTTP: "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    GRPC: "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
}
_NO_PROVIDER = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def _parent(traceparent: str | None) -> Context:
    """The context a message's traceparent names; an empty one (a new trace) if none."""
    if not traceparent:
        return Context()
    return propagate.extract({"traceparent": traceparent}, context=Context())


class Tracer:
    """saga-worker's spans, on whatever tracer provider is global when they are made."""

    def __init__(self) -> None:
        self._tracer = trace.get_tracer("saga_worker", __version__)

    @property
    def enabled(self) -> bool:
        """False while no tracer provider is set: then callers skip building attributes."""
        return not isinstance(trace.get_tracer_provider(), _NO_PROVIDER)

    def span(
        self, name: str, traceparent: str | None, start_ns: int, attributes: Attributes
    ) -> None:
        """A finished span from `start_ns` to now, a child of `traceparent`."""
        span = self._tracer.start_span(
            name,
            context=_parent(traceparent),
            kind=trace.SpanKind.CONSUMER,
            attributes=dict(attributes),
            start_time=start_ns,
        )
        span.end(end_time=time.time_ns())

    @contextmanager
    def active(self, name: str, traceparent: str | None, attributes: Attributes) -> Iterator[None]:
        """A span, a child of `traceparent`, current while the block runs: the spans the
        block makes (a handler's own, an instrumented client's) are its children."""
        with self._tracer.start_as_current_span(
            name,
            context=_parent(traceparent),
            kind=trace.SpanKind.INTERNAL,
            attributes=dict(attributes),
            record_exception=True,
            set_status_on_exception=True,
        ):
            yield


TRACER = Tracer()


def configure_tracing(service: str) -> Tracer:
    """The tracer; first sets up an SDK provider from the OTEL_* variables when the
    process has none and they ask for export (see the module docstring)."""
    if isinstance(trace.get_tracer_provider(), _NO_PROVIDER):
        provider = sdk_provider(service)
        if provider is not None:
            trace.set_tracer_provider(provider)
            log.info("exporting traces", extra={"service": service})
    return TRACER


def sdk_provider(service: str, env: Mapping[str, str] = os.environ) -> Any:
    """An SDK tracer provider exporting as the OTEL_* variables say, or None when they
    ask for no export, name nothing usable, or the SDK is not installed. It is not set
    as the global provider: configure_tracing does that."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = ["otlp"] if endpoint else []
    if not names or "none" in names:
        return None
    unknown = [n for n in names if n not in {"otlp", "console"}]
    if unknown:
        log.warning(
            "unsupported OTEL_TRACES_EXPORTER (use otlp, console or none); ignored",
            extra={"exporter": ",".join(unknown)},
        )
        names = [n for n in names if n not in unknown]
        if not names:
            return None
    try:
        sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
        export = importlib.import_module("opentelemetry.sdk.trace.export")
        resources = importlib.import_module("opentelemetry.sdk.resources")
        exporters = [_exporter(name, env, export) for name in names]
    except ImportError as exc:
        log.warning(
            "OpenTelemetry export configured but the SDK or its exporter is not installed "
            "(install saga-worker[otel], or saga-worker[otel-grpc] for gRPC); "
            "traces are not exported",
            extra={"missing": exc.name},
        )
        return None
    if None in exporters:
        return None
    # OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES, when they name the service, win.
    resource = resources.Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(resources.Resource({"service.name": service}))
    provider = sdk_trace.TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(export.BatchSpanProcessor(exporter))
    return provider


def otlp_protocol(env: Mapping[str, str] = os.environ) -> str:
    """The OTLP protocol for traces, as the standard variables say (http/protobuf if unset)."""
    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    return (raw or HTTP).strip().lower()


def _exporter(name: str, env: Mapping[str, str], export: Any) -> Any:
    if name == "console":
        return export.ConsoleSpanExporter()
    protocol = otlp_protocol(env)
    if protocol not in _OTLP_MODULES:
        log.warning(
            "unsupported OTLP protocol (use http/protobuf or grpc); traces are not exported",
            extra={"protocol": protocol},
        )
        return None
    # Endpoint, headers, certificates, timeout and compression: read by the exporter.
    return importlib.import_module(_OTLP_MODULES[protocol]).OTLPSpanExporter()
