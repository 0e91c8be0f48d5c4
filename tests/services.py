"""Where the tests' Kafka and Redis come from.

SAGA_TEST_SERVICES chooses. `auto` (the default) takes, in this order:

1. KAFKA_BOOTSTRAP_SERVERS / REDIS_URL from the environment;
2. testcontainers, where a Docker engine answers and has (or can pull) the two images;
3. the local processes of devstack, started here and stopped at the end.

`testcontainers` and `local` force that source, whatever the environment names (CI runs
the integration suite once each way); `env` requires the two variables.

The containers run SAGA_KAFKA_IMAGE (default apache/kafka:<devstack's Kafka version>)
and SAGA_REDIS_IMAGE (default redis:7.4), the same settings docker-compose.yml reads;
`make images` builds local ones where no registry answers (docker/local.env). The Kafka
container is a single KRaft node configured through the official image's variables,
which the local image reads too, with its advertised listener on the port Docker mapped:
it waits for that address before it starts the broker.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, cast

from redis.asyncio import Redis

from devstack.images import engine_answers
from saga_worker.runtime.redis_client import redis_from_url

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer


class Source(Enum):
    ENV = "env"
    TESTCONTAINERS = "testcontainers"
    LOCAL = "local"


@dataclass(frozen=True)
class Services:
    bootstrap_servers: str
    redis_url: str
    source: Source


CHOICE = "SAGA_TEST_SERVICES"
KAFKA_IMAGE = "SAGA_KAFKA_IMAGE"
REDIS_IMAGE = "SAGA_REDIS_IMAGE"
DEFAULT_REDIS_IMAGE = "redis:7.4"
KAFKA_READY_S = 120.0
ADVERTISED = "/tmp/saga-advertised-listeners"  # inside the container


def default_kafka_image() -> str:
    from devstack.stack import read_versions  # noqa: PLC0415

    return f"apache/kafka:{read_versions()['KAFKA_VERSION']}"


def images(env: Mapping[str, str]) -> tuple[str, str]:
    """The Kafka and Redis images the containers run."""
    return (
        env.get(KAFKA_IMAGE) or default_kafka_image(),
        env.get(REDIS_IMAGE) or DEFAULT_REDIS_IMAGE,
    )


def choose_source(env: Mapping[str, str], docker_ready: Callable[[], bool]) -> Source:
    """`docker_ready` is asked only when it matters: an engine answers and has the images."""
    choice = env.get(CHOICE, "auto").strip().lower() or "auto"
    if choice != "auto":
        try:
            forced = Source(choice)
        except ValueError:
            names = ", ".join(["auto", *(s.value for s in Source)])
            raise ValueError(f"{CHOICE}={choice!r}: use one of {names}") from None
        if forced is Source.ENV and not (
            env.get("KAFKA_BOOTSTRAP_SERVERS") and env.get("REDIS_URL")
        ):
            raise ValueError(f"{CHOICE}=env needs KAFKA_BOOTSTRAP_SERVERS and REDIS_URL")
        return forced
    if env.get("KAFKA_BOOTSTRAP_SERVERS") and env.get("REDIS_URL"):
        return Source.ENV
    if docker_ready():
        return Source.TESTCONTAINERS
    return Source.LOCAL


def images_at_hand(names: Sequence[str]) -> bool:
    """Every image is present, or pulled now (False at once where no registry answers)."""
    for name in names:
        present = subprocess.run(
            ["docker", "image", "inspect", name], capture_output=True, check=False
        )
        if present.returncode == 0:
            continue
        pulled = subprocess.run(
            ["docker", "pull", "-q", name], capture_output=True, timeout=900, check=False
        )
        if pulled.returncode != 0:
            return False
    return True


@contextmanager
def provide(env: Mapping[str, str]) -> Iterator[Services]:
    source = choose_source(env, lambda: engine_answers() and images_at_hand(images(env)))
    if source is Source.ENV:
        yield Services(env["KAFKA_BOOTSTRAP_SERVERS"], env["REDIS_URL"], source)
    elif source is Source.TESTCONTAINERS:
        with containers(*images(env)) as services:
            yield services
    else:
        with _local() as services:
            yield services


# -- testcontainers ----------------------------------------------------------------

KAFKA_PORT = 9092  # the listener the host reaches, on the port Docker maps it to
KAFKA_ENV = {
    "CLUSTER_ID": "dGVzdGNvbnRhaW5lcnNrYQ",
    "KAFKA_NODE_ID": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
    "KAFKA_LISTENERS": "PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
        "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
    ),
    "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    "KAFKA_LOG_DIRS": "/tmp/kafka-data",
    "KAFKA_NUM_PARTITIONS": "6",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "6",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    "KAFKA_HEAP_OPTS": "-Xms512m -Xmx512m",
}
# Both images start with /etc/kafka/docker/run; this waits for the advertised address
# first, which only exists once Docker has mapped the port.
KAFKA_COMMAND = [
    "bash",
    "-c",
    f"while [ ! -s {ADVERTISED} ]; do sleep 0.1; done; "
    f'export KAFKA_ADVERTISED_LISTENERS="$(cat {ADVERTISED})"; '
    "exec /etc/kafka/docker/run",
]


def kafka_container(image: str) -> DockerContainer:
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415 - needs Docker

    container = DockerContainer(image).with_exposed_ports(KAFKA_PORT)
    for key, value in KAFKA_ENV.items():
        container.with_env(key, value)
    return container.with_command(KAFKA_COMMAND)


def advertise(kafka: DockerContainer) -> str:
    """Tells the waiting broker its address as the host sees it; returns that address."""
    bootstrap = f"{kafka.get_container_host_ip()}:{kafka.get_exposed_port(KAFKA_PORT)}"
    listeners = f"PLAINTEXT://{bootstrap},BROKER://localhost:9093"
    done = kafka.exec(
        ["bash", "-c", f"echo '{listeners}' > {ADVERTISED}.new && mv {ADVERTISED}.new {ADVERTISED}"]
    )
    if done.exit_code != 0:
        raise RuntimeError(f"could not hand the Kafka container its address: {done.output!r}")
    return bootstrap


def wait_for_kafka(kafka: DockerContainer, bootstrap: str) -> None:
    from devstack.stack import kafka_ready  # noqa: PLC0415

    deadline = time.monotonic() + KAFKA_READY_S
    while time.monotonic() < deadline:
        if kafka_ready(bootstrap):
            return
        container = kafka.get_wrapped_container()
        container.reload()
        if container.status not in ("created", "running"):
            break
        time.sleep(0.5)
    out, err = kafka.get_logs()
    tail = (out + err).decode(errors="replace")[-2000:]
    raise RuntimeError(f"Kafka container not ready at {bootstrap}; its log ends:\n{tail}")


@contextmanager
def containers(kafka_image: str, redis_image: str) -> Iterator[Services]:
    """Kafka and Redis containers for the session, removed at its end.

    `with Container(...) as c` starts each once (`with c.start()` would start twice).
    """
    from testcontainers.community.redis import RedisContainer  # noqa: PLC0415 - needs Docker

    with kafka_container(kafka_image) as kafka, RedisContainer(redis_image) as redis:
        bootstrap = advertise(kafka)
        wait_for_kafka(kafka, bootstrap)
        host = redis.get_container_host_ip()
        port = redis.get_exposed_port(6379)
        yield Services(bootstrap, f"redis://{host}:{port}/0", Source.TESTCONTAINERS)


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
