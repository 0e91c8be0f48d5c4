"""Prometheus metrics, OpenTelemetry spans and JSON logs of every worker."""
