"""The one place Kafka clients are configured: idempotent producers, manual-commit consumers.

Every worker builds its clients here so security settings, acks and commit mode
cannot drift between the orchestrator, the participants and the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from saga_worker.errors import ConfigurationError
from saga_worker.wire.codec import MAX_BYTES

log = logging.getLogger(__name__)

LEADERS_WITHIN_S = 30.0
MAX_MESSAGE_BYTES = "max.message.bytes"  # a topic's limit on a record batch
DEFAULT_REPLICATION = "default.replication.factor"


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
    ssl_certfile: str | None = None  # mutual TLS
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = None
    token_provider: str | None = None  # OAUTHBEARER: `module:function`

    def __repr__(self) -> str:
        return f"KafkaConnection({self.bootstrap_servers!r}, {self.security_protocol})"

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context: the CA (or the system's), and the client certificate if any."""
        try:
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile is not None:
                context.load_cert_chain(
                    self.ssl_certfile, self.ssl_keyfile, password=self.ssl_key_password
                )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(
                f"Kafka TLS: cannot load KAFKA_SSL_CAFILE/CERTFILE/KEYFILE ({exc})"
            ) from exc
        return context

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            opts["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism == "OAUTHBEARER" and self.token_provider is not None:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_oauth_token_provider"] = HookTokenProvider(
                load_token_provider(self.token_provider)
            )
        elif self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = self.sasl_password
        return opts


TokenFunction = Callable[[], "str | Awaitable[str]"]


def load_token_provider(spec: str) -> TokenFunction:
    """The OAUTHBEARER hook `module:function`; ConfigurationError naming what is wrong."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(
            f"invalid setting KAFKA_SASL_OAUTH_TOKEN_PROVIDER: {spec!r} is not module:function"
        )
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"invalid setting KAFKA_SASL_OAUTH_TOKEN_PROVIDER: cannot load {spec} ({exc})"
        ) from exc
    if not callable(found):
        raise ConfigurationError(
            f"invalid setting KAFKA_SASL_OAUTH_TOKEN_PROVIDER: {spec} is not a function"
        )
    return cast(TokenFunction, found)


class HookTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """aiokafka's token provider around the user's function (sync or async)."""

    def __init__(self, function: TokenFunction) -> None:
        self._function = function

    async def token(self) -> str:
        value = self._function()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value:
            raise ConfigurationError("KAFKA_SASL_OAUTH_TOKEN_PROVIDER returned no token string")
        return value


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
    conn: KafkaConnection,
    names: Iterable[str],
    *,
    partitions: int,
    replication: int | None = None,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Creates the topics that are missing and waits until each partition has a leader.

    Returns the names it created. `replication` None takes the broker's
    default.replication.factor. A topic the broker refuses for good (authorization,
    replication factor, policy, config) is a ConfigurationError naming the topic and
    the broker's reason; a retriable refusal raises its KafkaError, to be retried.
    Producing to a topic whose leaders are not elected yet only earns retries and
    warnings, so the wait is worth it.
    """
    admin = AIOKafkaAdminClient(**conn.options())
    await admin.start()
    try:
        wanted = set(names)
        missing = sorted(wanted - set(await admin.list_topics()))
        if missing:
            factor = replication or await default_replication(admin)
            response = await admin.create_topics(
                [
                    NewTopic(
                        n,
                        num_partitions=partitions,
                        replication_factor=factor,
                        topic_configs=dict(configs or {}),
                    )
                    for n in missing
                ]
            )
            refused = topic_errors(response)
            if refused:
                raise refused[0]
            await _until_led(admin, missing)
        return missing
    finally:
        await admin.close()


async def default_replication(admin: AIOKafkaAdminClient) -> int:
    """The broker's default.replication.factor; else min(3, brokers) if it cannot be read."""
    cluster = await admin.describe_cluster()
    brokers = [b["node_id"] for b in cluster.get("brokers", [])]
    with contextlib.suppress(KafkaError, LookupError, ValueError, TypeError):
        resource = ConfigResource(
            ConfigResourceType.BROKER, str(cluster["controller_id"]), {DEFAULT_REPLICATION: None}
        )
        for response in await admin.describe_configs([resource]):
            for error_code, _, _, _, entries in response.resources:
                for entry in entries:
                    if not error_code and entry[0] == DEFAULT_REPLICATION:
                        return int(entry[1])
    return max(1, min(3, len(brokers)))


def topic_errors(response: Any) -> list[Exception]:
    """Each topic the CreateTopics response refuses, as an exception naming it.

    Already existing is no error (another instance won the race); a retriable code is
    the KafkaError itself; anything else a ConfigurationError with the broker's reason.
    """
    found: list[Exception] = []
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None  # v0 carries no message
        if code == 0:
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            continue
        if error.retriable:
            found.append(error(f"creating topic {topic}: {message or error.message}"))
            continue
        reason = message or error.description or error.message
        found.append(
            ConfigurationError(
                f"Kafka refused to create topic {topic}: {error.message} ({reason})"
                f"{TOPIC_HINTS.get(error.message, '')}"
            )
        )
    return found


TOPIC_HINTS = {
    "TOPIC_AUTHORIZATION_FAILED": "; grant CREATE on the topics, or create them beforehand",
    "CLUSTER_AUTHORIZATION_FAILED": "; grant CREATE on the topics, or create them beforehand",
    "INVALID_REPLICATION_FACTOR": "; set SAGA_REPLICATION_FACTOR",
    "POLICY_VIOLATION": "; see SAGA_REPLICATION_FACTOR and SAGA_TOPIC_CONFIGS",
    "INVALID_CONFIG": "; see SAGA_TOPIC_CONFIGS",
    "INVALID_PARTITIONS": "; see SAGA_PARTITIONS",
}


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
