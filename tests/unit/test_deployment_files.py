"""docker-compose.yml and the Dockerfile, checked as far as a machine without Docker allows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKERS = {"orchestrator", "inventory", "payment", "shipping", "notification"}
PARTICIPANTS = WORKERS - {"orchestrator"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    # Continuation lines joined, so each instruction is one line.
    return (ROOT / "Dockerfile").read_text().replace("\\\n", " ")


def test_every_service_is_there(services: dict[str, Any]) -> None:
    assert set(services) == {"kafka", "redis", "seed"} | WORKERS


@pytest.mark.parametrize("name", sorted(WORKERS | {"kafka", "redis"}))
def test_every_long_running_service_has_a_health_check(services: dict[str, Any], name: str) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert {"interval", "timeout", "retries"} <= set(check)


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_workers_run_the_image_against_kafka_and_redis_once_healthy(
    services: dict[str, Any], name: str
) -> None:
    worker = services[name]
    assert worker["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    deps = worker["depends_on"]
    assert deps["kafka"] == deps["redis"] == {"condition": "service_healthy"}
    env = worker["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["SAGA_HEALTH_HOST"] == "0.0.0.0"
    assert f":{env['SAGA_HEALTH_PORT']}/healthz" in " ".join(worker["healthcheck"]["test"])
    expected = ["orchestrator"] if name == "orchestrator" else ["participant", name]
    assert worker["command"] == expected


def test_participants_start_after_the_seed_succeeded(services: dict[str, Any]) -> None:
    seed = services["seed"]
    assert (seed["entrypoint"], seed["command"]) == (["python", "-m", "participants"], ["seed"])
    assert seed["restart"] == "no"
    assert seed["build"]["dockerfile"] == "Dockerfile"
    assert seed["depends_on"]["redis"] == {"condition": "service_healthy"}
    for name in PARTICIPANTS:
        seeded = services[name]["depends_on"]["seed"]
        assert seeded == {"condition": "service_completed_successfully"}


def test_kafka_and_redis_keep_their_data(services: dict[str, Any]) -> None:
    assert "--appendonly" in services["redis"]["command"]
    assert services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].startswith(
        "INTERNAL://kafka:29092"
    )


def test_the_image_runs_saga_worker_as_a_user_with_a_health_check(dockerfile: str) -> None:
    instructions = [line.strip() for line in dockerfile.splitlines() if line.strip()]
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["saga-worker"]' in instructions
    user = [i for i in instructions if i.startswith("USER ")]
    assert user
    assert user[-1] not in ("USER root", "USER 0")
    health = next(i for i in instructions if i.startswith("HEALTHCHECK "))
    assert "SAGA_HEALTH_PORT" in health
    assert "/healthz" in health
    assert "SAGA_HEALTH_HOST=0.0.0.0" in dockerfile


def test_the_image_leaves_local_state_and_secrets_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".runtime", ".env", "tests"} <= ignored
