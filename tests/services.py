"""Where the tests' Kafka and Redis come from, in this order of choice:

1. KAFKA_BOOTSTRAP_SERVERS / REDIS_URL from the environment;
2. testcontainers, where a Docker engine answers;
3. the local processes of devstack, started here and stopped at the end.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import cast

from redis.asyncio import Redis

from saga_worker.runtime.redis_client import redis_from_url


class Source(Enum):
    ENV = "env"
    TESTCONTAINERS = "testcontainers"
    LOCAL = "local"


@dataclass(frozen=True)
class Services:
    bootstrap_servers: str
    redis_url: str
    source: Source


def choose_source(env: Mapping[str, str], docker_answers: Callable[[], bool]) -> Source:
    if env.get("KAFKA_BOOTSTRAP_SERVERS") and env.get("REDIS_URL"):
        return Source.ENV
    if docker_answers():
        return Source.TESTCONTAINERS
    return Source.LOCAL


def docker_answers() -> bool:
    """A Docker client alone is not enough: the engine must answer."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


@contextmanager
def provide(env: Mapping[str, str]) -> Iterator[Services]:
    source = choose_source(env, docker_answers)
    if source is Source.ENV:
        yield Services(env["KAFKA_BOOTSTRAP_SERVERS"], env["REDIS_URL"], source)
    elif source is Source.TESTCONTAINERS:
        with _containers() as services:
            yield services
    else:
        with _local() as services:
            yield services


@contextmanager
def _containers() -> Iterator[Services]:
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415 - needs Docker
    from testcontainers.redis import RedisContainer  # noqa: PLC0415

    with KafkaContainer().with_kraft() as kafka, RedisContainer() as redis:
        host = redis.get_container_host_ip()
        port = redis.get_exposed_port(6379)
        yield Services(
            kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", Source.TESTCONTAINERS
        )


@contextmanager
def _local() -> Iterator[Services]:
    from devstack import stack  # noqa: PLC0415

    ports = stack.Ports()
    started = stack.up(ports)
    try:
        yield Services(ports.bootstrap, ports.redis_url, Source.LOCAL)
    finally:
        stack.down(started)


def redis_client_for(url: str) -> Redis:
    """The tests' Redis client for a URL: the cluster client for `redis+cluster://`.
    Typed as a single node's: the tests use the commands both clients share."""
    return cast(Redis, redis_from_url(url))
