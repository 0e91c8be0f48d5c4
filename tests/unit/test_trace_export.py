"""The OTLP export path, over HTTP and over gRPC, as the OTEL_* variables choose it:
spans reach a collector listening on loopback (a fake one, in this process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from saga_worker.observability.tracing import sdk_provider

Request = trace_service_pb2.ExportTraceServiceRequest


def names(requests: list[Any]) -> list[tuple[str, str]]:
    """(service.name, span name) of every span the collector received."""
    found = []
    for request in requests:
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                found += [(service, span.name) for span in scope.spans]
    return found


def export_one(service: str) -> None:
    provider = sdk_provider(service)
    assert provider is not None
    span = provider.get_tracer("saga_worker").start_span("saga OrderFulfillment")
    span.end()
    assert provider.force_flush(10_000)
    provider.shutdown()


@pytest.fixture
def http_collector() -> Iterator[tuple[int, list[Any]]]:
    received: list[Any] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(Request.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def grpc_collector() -> Iterator[tuple[int, list[Any]]]:
    received: list[Any] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        Collector(), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, received
    finally:
        server.stop(None)


def test_an_otlp_endpoint_alone_exports_over_http_named_by_the_worker(
    http_collector: tuple[int, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, received = http_collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    export_one("saga-worker-orchestrator")
    assert names(received) == [("saga-worker-orchestrator", "saga OrderFulfillment")]


def test_the_grpc_protocol_exports_over_grpc_and_otel_service_name_wins(
    grpc_collector: tuple[int, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, received = grpc_collector
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-orchestrator")
    export_one("saga-worker-orchestrator")
    assert names(received) == [("shop-orchestrator", "saga OrderFulfillment")]
