"""The one place Kafka clients are configured: idempotent producers, manual-commit consumers.

Every worker builds its clients here so security settings, acks and commit mode
cannot drift between the orchestrator, the participants and the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

LEADERS_WITHIN_S = 30.0


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


def make_producer(conn: KafkaConnection, *, linger_ms: int = 1) -> AIOKafkaProducer:
    # Idempotence implies acks=all; a short linger lets a batch's sends share requests.
    return AIOKafkaProducer(
        **conn.options(),
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
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
