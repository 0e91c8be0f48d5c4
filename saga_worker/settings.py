"""Settings of every worker, from environment variables (and a `.env` file when asked for).

Names are the environment variables, case-insensitive. Secrets are SecretStr so
they never appear in logs, reprs or `--help`, and each can come from a file
(`<NAME>_FILE`, for Kubernetes and Docker secrets). A `.env` file is read only
when `SAGA_ENV_FILE` names one. `load_settings()` turns a bad value, or settings
that contradict each other, into one ConfigurationError naming the variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal, Self

from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.connection import parse_url

from saga_worker.errors import ConfigurationError
from saga_worker.runtime.kafka_clients import KafkaConnection
from saga_worker.runtime.keys import KeySpace
from saga_worker.runtime.redis_client import first_node_url
from saga_worker.wire.codec import HEADER_ROOM, MAX_BYTES
from saga_worker.wire.topics import Topics


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", pattern=r"^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None
    ) = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # OAUTHBEARER: `module:function`, called (sync or async, no arguments) for each token.
    kafka_sasl_oauth_token_provider: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None  # mutual TLS: the client certificate (PEM)
    kafka_ssl_keyfile: str | None = None  # and its private key
    kafka_ssl_key_password: SecretStr | None = None
    kafka_client_id: str = Field(default="saga-worker", min_length=1)

    # The app the CLI runs and operates on (`module:object`); --app overrides it.
    saga_app: str = "participants.app:app"

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")  # may embed a password
    # An ACL user and password outside the URL (so the password can come from a file).
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_ssl_ca_certs: str | None = None  # rediss:// only: the CA of Redis's certificate
    redis_ssl_certfile: str | None = None  # rediss:// only: a client certificate
    redis_ssl_keyfile: str | None = None

    # Definitions keep topic names to 200 characters, so a prefix may use Kafka's other 49.
    saga_topic_prefix: str = Field(default="", max_length=49, pattern=r"^[A-Za-z0-9._-]*$")
    saga_key_prefix: str = "saga-worker:"
    saga_partitions: int = Field(default=6, ge=1, le=1000)
    # Replicas of topics created on start; none: the broker's default.replication.factor.
    saga_replication_factor: int | None = Field(default=None, ge=1, le=32767)
    # Configs of topics created on start, `name=value,name=value` (e.g. min.insync.replicas=2).
    saga_topic_configs: str = Field(
        default="", pattern=r"^\s*([a-z0-9._-]+=[^,=]*(\s*,\s*[a-z0-9._-]+=[^,=]*)*)?\s*$"
    )
    saga_group_prefix: str = "saga-worker"
    saga_instance_id: str | None = None  # static group membership, e.g. the pod name
    # The largest record a worker reads or writes, whole; the producer's max_request_size.
    # Larger values are dead-lettered, larger outgoing messages fail their saga (codec.py).
    saga_max_message_bytes: int = Field(default=MAX_BYTES, ge=2 * HEADER_ROOM, le=2**31 - 1)
    saga_batch_size: int = Field(default=500, ge=1, le=10_000)
    saga_retention_s: float = Field(default=7 * 24 * 3600, ge=1)
    # How long a saga's start marker is kept: a repeated start is known this long after
    # its saga finished. At least saga_retention_s (validated below, so declared after it).
    saga_start_retention_s: float = Field(default=90 * 24 * 3600, ge=1)
    saga_outbox_sweep_after_s: float = Field(default=10.0, gt=0)
    saga_timer_poll_ms: int = Field(default=100, ge=10, le=60_000)
    saga_health_port: int = Field(default=0, ge=0, le=65535)  # 0: no health/metrics server
    saga_health_host: str = "127.0.0.1"
    # Every Redis command (and connect) fails after this long instead of hanging.
    saga_redis_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    # /healthz turns 503 when one batch has been in hand (retrying or hanging) this long.
    saga_stall_after_s: float = Field(default=300.0, gt=0)
    saga_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Fault injection for chaos tests: SIGKILL the orchestrator at this point of a
    # batch, with this probability. Never set in production.
    saga_crash_point: Literal["after_save", "after_publish"] | None = None
    saga_crash_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    # Redis Cluster (issue 15): a `redis+cluster://` REDIS_URL or this selects the cluster
    # client; the global indexes are split into this many shards (keys.py).
    saga_redis_cluster: bool = False
    saga_index_shards: int = Field(default=4, ge=1, le=1024)
    # Before a batch's offsets are committed, wait until this many replicas have the
    # batch's writes (Redis WAIT), on every node written; a node with fewer fails the
    # batch (retried). Unset: adaptive, one replica on each node that has one, none on
    # a node that has none (runtime/replica_wait.py); 0: never wait. See the README.
    saga_redis_replicas: int | None = Field(default=None, ge=0, le=100)
    saga_redis_replica_timeout_ms: int = Field(default=1000, ge=1, le=600_000)
    # The web console (`saga-worker console`): where it listens, who may use it, and
    # whether it may act. Beyond loopback it refuses to start without credentials.
    saga_console_host: str = Field(default="127.0.0.1", min_length=1)
    saga_console_port: int = Field(default=8080, ge=1, le=65535)
    saga_console_token: SecretStr | None = None
    saga_console_user: str | None = Field(default=None, min_length=1, pattern=r"^[^:]+$")
    saga_console_password: SecretStr | None = None
    saga_console_read_only: bool = False
    saga_console_refresh_s: float = Field(default=5.0, ge=1, le=3600)

    @property
    def kafka(self) -> KafkaConnection:
        return KafkaConnection(
            bootstrap_servers=self.kafka_bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=_secret(self.kafka_sasl_password),
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_key_password=_secret(self.kafka_ssl_key_password),
            token_provider=self.kafka_sasl_oauth_token_provider,
            client_id=self.kafka_client_id,
        )

    @property
    def topic_configs(self) -> dict[str, str]:
        pairs = (p.partition("=") for p in self.saga_topic_configs.split(",") if p.strip())
        return {name.strip(): value.strip() for name, _, value in pairs}

    @field_validator("saga_log_level", mode="before")
    @classmethod
    def _level_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        try:
            parse_url(first_node_url(url))  # type: ignore[no-untyped-call]
        except ValueError as exc:  # redis-py's message never repeats the password
            raise ValueError(f"not a Redis URL ({exc})") from None
        return value

    @field_validator("saga_console_token", "saga_console_password")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < CONSOLE_SECRET_MIN:
            raise ValueError(f"must be at least {CONSOLE_SECRET_MIN} characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for problem in contradictions(self):
            raise ValueError(problem)
        return self

    @property
    def topics(self) -> Topics:
        return Topics(self.saga_topic_prefix)

    @property
    def keys(self) -> KeySpace:
        return KeySpace(self.saga_key_prefix, self.saga_index_shards)

    @property
    def retention(self) -> timedelta:
        return timedelta(seconds=self.saga_retention_s)

    @property
    def start_retention(self) -> timedelta:
        return timedelta(seconds=self.saga_start_retention_s)

    @field_validator("saga_start_retention_s")
    @classmethod
    def _outlives_sagas(cls, value: float, info: ValidationInfo) -> float:
        sagas = info.data.get("saga_retention_s")
        if sagas is not None and value < sagas:
            raise ValueError(f"must be at least SAGA_RETENTION_S ({sagas:.10g} s)")
        return value

    def group_id(self, role: str) -> str:
        return f"{self.saga_group_prefix}.{self.saga_topic_prefix}{role}"


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


# Secrets that may come from a file instead: `<NAME>_FILE` holds its path.
SECRETS = (
    "kafka_sasl_password",
    "kafka_ssl_key_password",
    "redis_url",
    "redis_password",
    "saga_console_token",
    "saga_console_password",
)
CONSOLE_SECRET_MIN = 16  # a console token or password shorter than this is refused
TLS = ("SSL", "SASL_SSL")
SASL = ("SASL_PLAINTEXT", "SASL_SSL")
FILES = (
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "redis_ssl_ca_certs",
    "redis_ssl_certfile",
    "redis_ssl_keyfile",
)


def contradictions(s: Settings) -> list[str]:
    """Settings that cannot all hold: each one line naming the variables."""
    found = []
    protocol, mechanism = s.kafka_security_protocol, s.kafka_sasl_mechanism
    user = s.kafka_sasl_username is not None or s.kafka_sasl_password is not None
    if protocol in SASL and mechanism is None:
        found.append(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM")
    if protocol not in SASL and (mechanism is not None or user):
        given = "KAFKA_SASL_MECHANISM" if mechanism is not None else "KAFKA_SASL_USERNAME/PASSWORD"
        found.append(
            f"{given} is set but KAFKA_SECURITY_PROTOCOL={protocol} never sends it:"
            " use SASL_SSL (or SASL_PLAINTEXT), or unset it"
        )
    secretless = s.kafka_sasl_username is None or s.kafka_sasl_password is None
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and protocol in SASL and secretless:
        found.append(
            f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SASL_USERNAME and"
            " KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
        )
    if mechanism == "OAUTHBEARER":
        if s.kafka_sasl_oauth_token_provider is None:
            found.append("KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SASL_OAUTH_TOKEN_PROVIDER")
        if user:
            found.append("KAFKA_SASL_MECHANISM=OAUTHBEARER takes no KAFKA_SASL_USERNAME/PASSWORD")
    elif s.kafka_sasl_oauth_token_provider is not None:
        found.append(
            "KAFKA_SASL_OAUTH_TOKEN_PROVIDER is set but KAFKA_SASL_MECHANISM is not OAUTHBEARER"
        )
    tls_files = [
        n
        for n in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
        if getattr(s, n) is not None
    ]
    if protocol not in TLS and (tls_files or s.kafka_ssl_key_password is not None):
        named = (tls_files or ["kafka_ssl_key_password"])[0].upper()
        found.append(
            f"{named} is set but KAFKA_SECURITY_PROTOCOL={protocol} has no TLS: use SSL or SASL_SSL"
        )
    if s.kafka_ssl_keyfile is not None and s.kafka_ssl_certfile is None:
        found.append("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the client certificate)")
    redis_tls = s.redis_url.get_secret_value().startswith(("rediss://", "rediss+cluster://"))
    redis_files = [
        n
        for n in ("redis_ssl_ca_certs", "redis_ssl_certfile", "redis_ssl_keyfile")
        if getattr(s, n) is not None
    ]
    if redis_files and not redis_tls:
        found.append(f"{redis_files[0].upper()} is set but REDIS_URL is not rediss:// (TLS)")
    if s.redis_ssl_keyfile is not None and s.redis_ssl_certfile is None:
        found.append("REDIS_SSL_KEYFILE needs REDIS_SSL_CERTFILE (the client certificate)")
    for name in FILES:
        path = getattr(s, name)
        if path is not None and not os.access(path, os.R_OK):
            why = "does not exist" if not Path(path).exists() else "is not readable"
            found.append(f"{name.upper()}: {path} {why}")
    if (s.saga_console_user is None) != (s.saga_console_password is None):
        found.append("SAGA_CONSOLE_USER and SAGA_CONSOLE_PASSWORD go together: set both or neither")
    if s.kafka_sasl_oauth_token_provider is not None:
        from saga_worker.runtime.kafka_clients import load_token_provider  # noqa: PLC0415

        try:
            load_token_provider(s.kafka_sasl_oauth_token_provider)
        except ConfigurationError as exc:
            found.append(str(exc))
    return found


def load_settings(**overrides: object) -> Settings:
    """The settings from the environment (and SAGA_ENV_FILE), `overrides` first."""
    env_file = os.environ.get("SAGA_ENV_FILE") or None
    if env_file is not None and not Path(env_file).is_file():
        raise ConfigurationError(f"invalid setting SAGA_ENV_FILE: no such file {env_file}")
    from_files = secrets_from_files(os.environ, env_file, overrides)
    try:
        return Settings(_env_file=env_file, **{**from_files, **overrides})  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        name = ".".join(str(p) for p in first["loc"]).upper()
        message = first["msg"].removeprefix("Value error, ")
        if not name:  # a contradiction between settings: the message names them
            raise ConfigurationError(f"invalid settings: {message}") from exc
        raise ConfigurationError(f"invalid setting {name}: {message}") from exc


def secrets_from_files(
    environ: Mapping[str, str], env_file: str | None, overrides: Mapping[str, object]
) -> dict[str, str]:
    """Each secret whose `<NAME>_FILE` is set, read from that file (one trailing newline cut)."""
    variables = {k.upper(): v for k, v in environ.items()}
    if env_file is not None:
        dotenv = {k.upper(): v for k, v in dotenv_values(env_file).items() if v is not None}
        variables = {**dotenv, **variables}
    found: dict[str, str] = {}
    for name in SECRETS:
        path = variables.get(f"{name.upper()}_FILE")
        if path is None or name in overrides:
            continue
        if name.upper() in variables:
            raise ConfigurationError(
                f"invalid settings: {name.upper()} and {name.upper()}_FILE are both set; keep one"
            )
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigurationError(
                f"invalid setting {name.upper()}_FILE: cannot read {path} ({exc.strerror})"
            ) from exc
        found[name] = text.removesuffix("\n").removesuffix("\r")
    return found
