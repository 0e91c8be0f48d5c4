"""Optional OpenTelemetry export: a span per applied saga write and per participant command.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_TRACES_EXPORTER` is set (and
not `none`) and the SDK is installed (`pip install 'saga-worker[otel]'`:
opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http). The SDK is
imported by name so it stays an optional dependency. Each span is a child of
the W3C `traceparent` the message carried, so one order's saga shows up as one
trace; the headers themselves are passed on unchanged whether export is on or not.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

Attributes = Mapping[str, str | int]


class Tracer:
    """Records finished spans; every call is a no-op when export is off."""

    def __init__(self, otel_tracer: Any = None, propagator: Any = None) -> None:
        self._tracer = otel_tracer
        self._propagator = propagator

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def span(
        self, name: str, traceparent: str | None, start_ns: int, attributes: Attributes
    ) -> None:
        if self._tracer is None:
            return
        parent = self._propagator.extract({"traceparent": traceparent}) if traceparent else None
        span = self._tracer.start_span(
            name, context=parent, attributes=dict(attributes), start_time=start_ns
        )
        span.end(end_time=time.time_ns())


OFF = Tracer()
_providers: dict[str, Tracer] = {}


def configure_tracing(service: str, env: Mapping[str, str] = os.environ) -> Tracer:
    """The tracer for this process's `service`, or OFF when export is not configured."""
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter_name == "none" or not (exporter_name or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return OFF
    if service in _providers:
        return _providers[service]
    exporter_name = exporter_name or "otlp"
    if exporter_name not in {"otlp", "console"}:
        log.warning(
            "unsupported OTEL_TRACES_EXPORTER (use otlp, console or none); traces are not exported",
            extra={"exporter": exporter_name},
        )
        tracer = OFF
    else:
        try:
            tracer = _sdk_tracer(service, exporter_name, env)
        except ImportError as exc:
            log.warning(
                "OpenTelemetry export configured but the SDK is not installed "
                "(install saga-worker[otel]); traces are not exported",
                extra={"missing": exc.name},
            )
            tracer = OFF
    _providers[service] = tracer
    return tracer


def _sdk_tracer(service: str, exporter_name: str, env: Mapping[str, str]) -> Tracer:
    sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
    export = importlib.import_module("opentelemetry.sdk.trace.export")
    resources = importlib.import_module("opentelemetry.sdk.resources")
    propagation = importlib.import_module("opentelemetry.trace.propagation.tracecontext")
    if exporter_name == "console":
        exporter = export.ConsoleSpanExporter()
    else:
        otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        exporter = otlp.OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    # OTEL_SERVICE_NAME, when set, names the service; otherwise the worker does.
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = sdk_trace.TracerProvider(resource=resources.Resource.create(attributes))
    provider.add_span_processor(export.BatchSpanProcessor(exporter))
    log.info("exporting traces", extra={"service": service, "exporter": exporter_name})
    return Tracer(provider.get_tracer("saga_worker"), propagation.TraceContextTextMapPropagator())
