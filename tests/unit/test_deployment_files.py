"""docker-compose.yml and the Dockerfile, read as files (tests/docker runs them for real)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.images import read_env_file
from devstack.stack import read_versions
from tests.services import DEFAULT_REDIS_IMAGE, default_kafka_image

ROOT = Path(__file__).resolve().parents[2]
WORKERS = {"orchestrator", "inventory", "payment", "shipping", "notification"}
PARTICIPANTS = WORKERS - {"orchestrator"}
ALL = WORKERS | {"kafka", "redis", "seed"}


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
    assert worker["build"] == {
        "context": ".",
        "dockerfile": "Dockerfile",
        "args": {"BASE_IMAGE": "${SAGA_PYTHON_IMAGE:-python:3.11-slim}"},
    }
    assert worker["image"] == "${SAGA_IMAGE:-saga-worker:local}"
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
    # --once: every `up` runs the seed, which must not reload stock and balances.
    assert (seed["entrypoint"], seed["command"]) == (
        ["python", "-m", "participants"],
        ["seed", "--once"],
    )
    assert seed["restart"] == "no"
    assert seed["build"]["dockerfile"] == "Dockerfile"
    assert seed["depends_on"]["redis"] == {"condition": "service_healthy"}
    for name in PARTICIPANTS:
        seeded = services[name]["depends_on"]["seed"]
        assert seeded == {"condition": "service_completed_successfully"}


def test_kafka_and_redis_keep_their_data(services: dict[str, Any]) -> None:
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    kafka = services["kafka"]
    env = kafka["environment"]
    assert env["KAFKA_ADVERTISED_LISTENERS"].startswith("INTERNAL://kafka:29092")
    # The log in the volume (the image's default is /tmp/kraft-combined-logs) ...
    assert kafka["volumes"] == [f"kafka-data:{env['KAFKA_LOG_DIRS']}"]
    # ... formatted for a fixed cluster id: a KRaft id is 16 bytes, url-safe base64.
    cluster = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster + "==")) == 16
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster)


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_service_runs_under_an_init(services: dict[str, Any], name: str) -> None:
    # PID 1 ignores SIGTERM it has no handler for: a one-shot would wait for SIGKILL.
    assert services[name]["init"] is True


def test_the_kafka_health_check_starts_no_jvm(services: dict[str, Any]) -> None:
    check = services["kafka"]["healthcheck"]
    command = " ".join(check["test"])
    assert "java" not in command
    assert ".sh" not in command
    assert check["test"][:3] == ["CMD", "bash", "-c"]
    # An ApiVersions (key 18) v0 request whose length prefix counts the bytes after it.
    sent = re.search(r'printf "([^"]+)"', command)
    assert sent
    raw = sent[1].encode().decode("unicode_escape").encode("latin-1")
    assert int.from_bytes(raw[:4], "big") == len(raw) - 4
    assert raw[4:8] == b"\x00\x12\x00\x00"
    correlation = raw[8:12]
    assert f"{correlation.hex()}0000" in command  # the answer: same correlation, no error
    assert "29092" in command


def test_images_are_settings_with_the_official_defaults(services: dict[str, Any]) -> None:
    kafka_version = read_versions()["KAFKA_VERSION"]
    assert services["kafka"]["image"] == f"${{SAGA_KAFKA_IMAGE:-{default_kafka_image()}}}"
    assert default_kafka_image() == f"apache/kafka:{kafka_version}"
    assert services["redis"]["image"] == f"${{SAGA_REDIS_IMAGE:-{DEFAULT_REDIS_IMAGE}}}"
    published = services["kafka"]["ports"] + services["redis"]["ports"]
    assert published == [
        "127.0.0.1:${SAGA_COMPOSE_KAFKA_PORT:-9092}:9092",
        "127.0.0.1:${SAGA_COMPOSE_REDIS_PORT:-6379}:6379",
    ]


def test_the_local_images_select_every_image_setting(services: dict[str, Any]) -> None:
    local = read_env_file(ROOT / "docker" / "local.env")
    compose = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(SAGA_(?:\w+_)?IMAGE):-", compose))
    assert used == {"SAGA_KAFKA_IMAGE", "SAGA_REDIS_IMAGE", "SAGA_PYTHON_IMAGE", "SAGA_IMAGE"}
    assert set(local) == used | {"SAGA_DEBIAN_IMAGE"}
    assert local["SAGA_KAFKA_IMAGE"].endswith(":" + read_versions()["KAFKA_VERSION"])
    # The project's image goes FROM the local base, which has no Python until it installs it.
    assert local["SAGA_PYTHON_IMAGE"] == local["SAGA_DEBIAN_IMAGE"]


def test_the_image_runs_saga_worker_as_a_user_with_a_health_check(dockerfile: str) -> None:
    instructions = [line.strip() for line in dockerfile.splitlines() if line.strip()]
    assert "ARG BASE_IMAGE=python:3.11-slim" in instructions
    assert [i for i in instructions if i.startswith("FROM ")] == ["FROM ${BASE_IMAGE}"]
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
