"""The health server's routes and the optional tracing switch, without a broker."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from saga_worker.observability.tracing import OFF, configure_tracing
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


@pytest.mark.parametrize("env", [{}, {"OTEL_TRACES_EXPORTER": "none"}])
def test_tracing_is_off_unless_an_exporter_is_configured(env: dict[str, str]) -> None:
    tracer = configure_tracing("test-off", env)
    assert tracer is OFF
    assert not tracer.enabled
    tracer.span("nothing", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 0, {})


def test_an_unknown_exporter_is_reported_and_tracing_stays_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "saga_worker.observability.tracing"):
        assert configure_tracing("test-unknown", {"OTEL_TRACES_EXPORTER": "zipkin"}) is OFF
    assert "unsupported OTEL_TRACES_EXPORTER" in caplog.text


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry") is not None, reason="the SDK is installed"
)
def test_a_configured_exporter_without_the_sdk_says_what_to_install(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    with caplog.at_level(logging.WARNING, "saga_worker.observability.tracing"):
        assert configure_tracing("test-missing", env) is OFF
    assert "saga-worker[otel]" in caplog.text
