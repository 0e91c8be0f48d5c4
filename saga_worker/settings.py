"""Settings of every worker, from environment variables (and a `.env` file).

Names are the environment variables, case-insensitive. Secrets are SecretStr so
they never appear in logs, reprs or `--help`. `load_settings()` turns a bad
value into one ConfigurationError naming the variable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from saga_worker.errors import ConfigurationError
from saga_worker.runtime.kafka_clients import KafkaConnection
from saga_worker.runtime.keys import KeySpace
from saga_worker.wire.codec import HEADER_ROOM, MAX_BYTES
from saga_worker.wire.topics import Topics


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None

    # The app the CLI runs and operates on (`module:object`); --app overrides it.
    saga_app: str = "participants.app:app"

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")  # may embed a password

    # Definitions keep topic names to 200 characters, so a prefix may use Kafka's other 49.
    saga_topic_prefix: str = Field(default="", max_length=49, pattern=r"^[A-Za-z0-9._-]*$")
    saga_key_prefix: str = "saga-worker:"
    saga_partitions: int = Field(default=6, ge=1, le=1000)
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
    # Fault injection for chaos tests: SIGKILL the orchestrator at this point of a
    # batch, with this probability. Never set in production.
    saga_crash_point: Literal["after_save", "after_publish"] | None = None
    saga_crash_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    # Redis Cluster (issue 15): a `redis+cluster://` REDIS_URL or this selects the cluster
    # client; the global indexes are split into this many shards (keys.py).
    saga_redis_cluster: bool = False
    saga_index_shards: int = Field(default=4, ge=1, le=1024)
    # Before a batch's offsets are committed, wait until this many replicas have the
    # batch's writes (Redis WAIT). Unset: as many as the primary has (0 on a Redis
    # without replicas), asked once at start; 0: never wait. See the README.
    saga_redis_replicas: int | None = Field(default=None, ge=0, le=100)
    saga_redis_replica_timeout_ms: int = Field(default=1000, ge=1, le=600_000)

    @property
    def kafka(self) -> KafkaConnection:
        password = self.kafka_sasl_password
        return KafkaConnection(
            bootstrap_servers=self.kafka_bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password else None,
            ssl_cafile=self.kafka_ssl_cafile,
        )

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


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        name = ".".join(str(p) for p in first["loc"]).upper()
        raise ConfigurationError(f"invalid setting {name}: {first['msg']}") from exc
