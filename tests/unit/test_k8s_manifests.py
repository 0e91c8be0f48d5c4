"""deploy/k8s, checked offline: every document against Kubernetes' own schemas (strict:
an unknown or misspelt field fails), then what the manifests promise the workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from saga_worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.30.0"  # the oldest version still served by the big managed platforms
WORKERS = {
    "orchestrator": ["orchestrator"],
    "inventory": ["participant", "inventory"],
    "payment": ["participant", "payment"],
    "shipping": ["participant", "shipping"],
    "notification": ["participant", "notification"],
}


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())  # type: ignore[no-any-return]


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_the_kustomization_lists_every_manifest() -> None:
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization()["resources"]) == files


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_document_is_valid_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.path}")


def worker_container(name: str) -> dict[str, Any]:
    pod = find("StatefulSet", name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_each_worker_runs_its_role_with_stable_identity(name: str) -> None:
    workload = find("StatefulSet", name)
    assert workload["spec"]["serviceName"] == name
    assert find("Service", name)["spec"]["clusterIP"] == "None"
    container = worker_container(name)
    assert container["args"] == WORKERS[name]
    assert container["image"] == "saga-worker"  # kustomization.yaml's images set the tag
    (instance,) = [e for e in container["env"] if e["name"] == "SAGA_INSTANCE_ID"]
    assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_probes_hit_the_health_server(name: str) -> None:
    container = worker_container(name)
    config = find("ConfigMap", "saga-worker-config")["data"]
    (port,) = container["ports"]
    assert port["containerPort"] == int(config["SAGA_HEALTH_PORT"])
    assert config["SAGA_HEALTH_HOST"] == "0.0.0.0"
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert ready["httpGet"] == {"path": "/readyz", "port": port["name"]}
    # The server answers at once (also while waiting for Kafka and Redis): no delay needed.
    assert "initialDelaySeconds" not in live


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_resources_are_requested_and_the_pod_is_locked_down(name: str) -> None:
    container = worker_container(name)
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    pod = find("StatefulSet", name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_a_disruption_budget_keeps_one_pod_of_each_worker(name: str) -> None:
    workload = find("StatefulSet", name)
    budget = find("PodDisruptionBudget", name)["spec"]
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["minAvailable"] < workload["spec"]["replicas"]


@pytest.mark.parametrize("name", [*sorted(WORKERS), "seed"])
def test_configuration_comes_from_the_config_map_and_secrets_from_the_secret(name: str) -> None:
    if name == "seed":
        job = find("Job", "saga-worker-seed")["spec"]["template"]["spec"]
        (container,) = job["containers"]
        assert container["args"] == ["seed", "--once"]
    else:
        container = worker_container(name)
    sources = [next(iter(s.values()))["name"] for s in container["envFrom"]]
    assert sources == ["saga-worker-config", "saga-worker-secrets"]


def test_every_key_is_a_setting_and_secrets_stay_out_of_the_config_map() -> None:
    # SAGA_LOG_LEVEL is read by the logging set-up, before the settings.
    settings = {name.upper() for name in Settings.model_fields} | {"SAGA_LOG_LEVEL"}
    config = set(find("ConfigMap", "saga-worker-config")["data"])
    secret = set(find("Secret", "saga-worker-secrets")["stringData"])
    assert config <= settings
    assert secret == {"REDIS_URL"}  # it may embed a password
    assert not config & {"REDIS_URL", "KAFKA_SASL_PASSWORD", "KAFKA_SASL_USERNAME"}
