"""The Grafana dashboard and the Prometheus alert rules name only metrics the workers
export, and cover what an operator is paged for. (`make check-alerts` runs promtool.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from saga_worker.observability.metrics import OrchestratorMetrics, ParticipantMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "saga-worker.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
NAMED = re.compile(r"\bsaga_worker_[a-z_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> set[str]:
    """Every series name the orchestrator and a participant expose."""
    names = set()
    for metrics in (OrchestratorMetrics(), ParticipantMetrics("participant.x", "x")):
        for family in metrics.registry.collect():
            names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def alert_rules() -> list[dict[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_named_is_one_the_workers_export(source: str) -> None:
    queries = dashboard_queries() if source == "dashboard" else [r["expr"] for r in alert_rules()]
    named = {name for query in queries for name in NAMED.findall(query)}
    assert named, f"the {source} names no saga_worker metric"
    assert named - exported() == set()


def test_a_metric_the_workers_do_not_export_is_caught() -> None:
    assert NAMED.findall("rate(saga_worker_sagas_vanished_total[5m])")[0] not in exported()


def test_the_rules_cover_what_an_operator_is_paged_for() -> None:
    rules = {r["alert"]: r["expr"] for r in alert_rules()}
    wanted = {
        "SagaWorkerSagasNeedOperator": 'saga_worker_sagas{status="needs_operator"}',
        "SagaWorkerDeadLetters": "saga_worker_dead_letters_total",
        "SagaWorkerOutboxBacklogGrowing": "saga_worker_outbox_backlog",
        "SagaWorkerTimerBacklogGrowing": "saga_worker_timer_backlog",
        "SagaWorkerConsumerLagGrowing": "saga_worker_consumer_lag",
        "SagaWorkerNoProgress": "saga_worker_sagas_completed_total",
        "SagaWorkerDown": "up{",
    }
    for alert, metric in wanted.items():
        assert metric in rules.get(alert, ""), alert


def test_the_dashboard_has_unique_panel_ids_and_a_datasource_variable() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
