"""The one place Kafka clients are configured: idempotent producers, manual-commit consumers.

Every worker builds its clients here so security settings, acks and commit mode
cannot drift between the orchestrator, the participants and the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from saga_worker.errors import ConfigurationError
from saga_worker.wire.codec import MAX_BYTES

log = logging.getLogger(__name__)

LEADERS_WITHIN_S = 30.0
MAX_MESSAGE_BYTES = "max.message.bytes"  # a topic's limit on a record batch


@dataclass(frozen=True)
class KafkaConnection:
    """How to reach the cluster; secrets never appear in repr()."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    client_id: str = "saga-worker"

    def __repr__(self) -> str:
        return f"KafkaConnection({self.bootstrap_servers!r}, {self.security_protocol})"

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            opts["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = self.sasl_password
        return opts


def make_producer(
    conn: KafkaConnection, *, linger_ms: int = 1, max_request_size: int = MAX_BYTES
) -> AIOKafkaProducer:
    # Idempotence implies acks=all; a short linger lets a batch's sends share requests.
    # A worker's max_request_size is its SAGA_MAX_MESSAGE_BYTES (wire/codec.py).
    return AIOKafkaProducer(
        **conn.options(),
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        max_request_size=max_request_size,
        request_timeout_ms=30_000,
    )


async def check_record_size(
    conn: KafkaConnection, topics: Iterable[str], record_bytes: int
) -> None:
    """ConfigurationError if a topic's max.message.bytes is below `record_bytes`.

    The broker turns such a record away with a non-retriable error, in the middle
    of a batch; better to refuse at start. Best effort: a topic the client may not
    describe (ACLs), or a broker that does not answer, is not checked.
    """
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, {MAX_MESSAGE_BYTES: None})
        for name in sorted(set(topics))
    ]
    admin = AIOKafkaAdminClient(**conn.options())
    try:
        await admin.start()
        responses = await admin.describe_configs(resources)
    except KafkaError as exc:
        log.warning("could not read the topics' max.message.bytes", extra={"error": repr(exc)})
        return
    finally:
        await admin.close()
    for response in responses:
        for error_code, _, _, topic, entries in response.resources:
            limits = [int(e[1]) for e in entries if e[0] == MAX_MESSAGE_BYTES and not error_code]
            if limits and min(limits) < record_bytes:
                raise ConfigurationError(
                    f"SAGA_MAX_MESSAGE_BYTES is {record_bytes}, but topic {topic} accepts at"
                    f" most {min(limits)} bytes (max.message.bytes): lower the setting or"
                    " raise the topic's limit"
                )


def make_consumer(
    conn: KafkaConnection,
    *topics: str,
    group_id: str,
    max_poll_records: int = 500,
    auto_offset_reset: str = "earliest",
    instance_id: str | None = None,
) -> AIOKafkaConsumer:
    # Offsets move only when a worker commits after its effects are durable.
    # A static instance id lets a restarted worker take its partitions back at
    # once instead of waiting out the dead member's session (KIP-345).
    return AIOKafkaConsumer(
        *topics,
        **conn.options(),
        group_id=group_id,
        group_instance_id=instance_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        max_poll_records=max_poll_records,
        isolation_level="read_committed",
    )


async def ensure_topics(
    conn: KafkaConnection, names: Iterable[str], *, partitions: int, replication: int = 1
) -> list[str]:
    """Creates the topics that are missing and waits until each partition has a leader.

    Returns the names it created. Producing to a topic whose leaders are not
    elected yet only earns retries and warnings, so the wait is worth it.
    """
    admin = AIOKafkaAdminClient(**conn.options())
    await admin.start()
    try:
        wanted = set(names)
        missing = sorted(wanted - set(await admin.list_topics()))
        if missing:
            # Another instance may win the race; the topic is there either way.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=partitions, replication_factor=replication)
                        for n in missing
                    ]
                )
            await _until_led(admin, missing)
        return missing
    finally:
        await admin.close()


async def _until_led(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
    deadline = asyncio.get_running_loop().time() + LEADERS_WITHIN_S
    while asyncio.get_running_loop().time() < deadline:
        described = await admin.describe_topics(topics)
        if all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        await asyncio.sleep(0.05)
