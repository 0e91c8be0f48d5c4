"""The health server's routes and the tracing set-up from OTEL_* variables, without a broker."""

from __future__ import annotations

import logging

import pytest

from saga_worker.observability.tracing import otlp_protocol, sdk_provider
from saga_worker.runtime.health import HealthServer
from tests.http_probe import http_response


async def test_metrics_are_served_next_to_the_probes() -> None:
    server = HealthServer("127.0.0.1", 0, lambda: True, lambda: False, metrics=lambda: b"m 1\n")
    await server.start()
    try:
        head, body = await http_response(server.port, "/metrics")
        assert head.startswith("HTTP/1.1 200")
        assert "Content-Type: text/plain; version=" in head
        assert body == b"m 1\n"
        assert (await http_response(server.port, "/readyz"))[0].startswith("HTTP/1.1 503")
        assert (await http_response(server.port, "/healthz"))[1] == b"ok\n"
    finally:
        await server.stop()


async def test_without_metrics_the_path_is_not_found() -> None:
    server = HealthServer("127.0.0.1", 0, lambda: True, lambda: True)
    await server.start()
    try:
        assert (await http_response(server.port, "/metrics"))[0].startswith("HTTP/1.1 404")
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "otlp,none"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_no_provider_is_set_up_unless_the_variables_ask_for_export(env: dict[str, str]) -> None:
    assert sdk_provider("test-off", env) is None


def test_an_unknown_exporter_is_reported_and_nothing_is_set_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "saga_worker.observability.tracing"):
        assert sdk_provider("test-unknown", {"OTEL_TRACES_EXPORTER": "zipkin"}) is None
    assert "unsupported OTEL_TRACES_EXPORTER" in caplog.text


def test_an_unknown_otlp_protocol_is_reported_and_nothing_is_set_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    with caplog.at_level(logging.WARNING, "saga_worker.observability.tracing"):
        assert sdk_provider("test-json", env) is None
    assert "unsupported OTLP protocol" in caplog.text


def test_the_traces_protocol_overrides_the_general_one() -> None:
    assert otlp_protocol({}) == "http/protobuf"
    assert otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == "grpc"
    both = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "HTTP/protobuf",
    }
    assert otlp_protocol(both) == "http/protobuf"
