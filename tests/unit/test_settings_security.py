"""Settings checked as a whole: contradictions, secrets from files, the .env file on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from saga_worker.errors import ConfigurationError
from saga_worker.runtime.kafka_clients import HookTokenProvider, topic_errors
from saga_worker.settings import load_settings


def token() -> str:
    return "a-token"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM"),
        (
            {"kafka_sasl_username": "u", "kafka_sasl_password": "p"},
            "KAFKA_SECURITY_PROTOCOL=PLAINTEXT never sends it",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512"},
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"},
            "needs KAFKA_SASL_OAUTH_TOKEN_PROVIDER",
        ),
        ({"kafka_ssl_cafile": "/etc/hostname"}, "KAFKA_SSL_CAFILE is set but"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/etc/hostname"},
            "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/such/ca.pem"},
            "KAFKA_SSL_CAFILE: /no/such/ca.pem does not exist",
        ),
        ({"redis_ssl_ca_certs": "/etc/hostname"}, "REDIS_URL is not rediss://"),
        ({"redis_url": "redis://:secret@host:port/0"}, "invalid setting REDIS_URL"),
        ({"redis_url": "http://host"}, "invalid setting REDIS_URL"),
        ({"saga_log_level": "LOUD"}, "invalid setting SAGA_LOG_LEVEL"),
        ({"kafka_bootstrap_servers": "nohostport"}, "invalid setting KAFKA_BOOTSTRAP_SERVERS"),
        ({"saga_replication_factor": 0}, "invalid setting SAGA_REPLICATION_FACTOR"),
        ({"saga_topic_configs": "retention.ms"}, "invalid setting SAGA_TOPIC_CONFIGS"),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "OAUTHBEARER",
                "kafka_sasl_oauth_token_provider": "no_such_module:f",
            },
            "cannot load no_such_module:f",
        ),
    ],
)
def test_contradictions_and_bad_values_are_one_line_naming_the_settings(
    overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named) as caught:
        load_settings(**overrides)
    assert "\n" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_secure_settings_that_agree_are_accepted() -> None:
    s = load_settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauth_token_provider=f"{__name__}:token",
        kafka_client_id="orders-eu",
        saga_log_level="debug",
        saga_topic_configs="min.insync.replicas=2, retention.ms=604800000",
        redis_url="rediss://saga@127.0.0.1:6380/0",
        redis_ssl_ca_certs="/etc/hostname",
    )
    assert s.saga_log_level == "DEBUG"
    assert s.topic_configs == {"min.insync.replicas": "2", "retention.ms": "604800000"}
    options = s.kafka.options()
    assert options["client_id"] == "orders-eu"
    assert isinstance(options["sasl_oauth_token_provider"], HookTokenProvider)


async def test_the_token_hook_may_be_sync_or_async() -> None:
    async def later() -> str:
        return "t2"

    assert await HookTokenProvider(token).token() == "a-token"
    assert await HookTokenProvider(later).token() == "t2"


def test_secrets_come_from_files_and_not_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(secret))
    assert load_settings().redis_password is not None
    assert load_settings().redis_password.get_secret_value() == "s3cret"  # type: ignore[union-attr]
    monkeypatch.setenv("REDIS_PASSWORD", "other")
    with pytest.raises(ConfigurationError, match="REDIS_PASSWORD and REDIS_PASSWORD_FILE"):
        load_settings()
    monkeypatch.delenv("REDIS_PASSWORD")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="REDIS_PASSWORD_FILE: cannot read"):
        load_settings()


def test_the_env_file_is_read_only_when_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAGA_ENV_FILE", raising=False)
    monkeypatch.delenv("SAGA_PARTITIONS", raising=False)
    (tmp_path / ".env").write_text("SAGA_PARTITIONS=3\n")
    assert load_settings().saga_partitions == 6
    monkeypatch.setenv("SAGA_ENV_FILE", str(tmp_path / ".env"))
    assert load_settings().saga_partitions == 3
    monkeypatch.setenv("SAGA_ENV_FILE", str(tmp_path / "nope.env"))
    with pytest.raises(ConfigurationError, match="SAGA_ENV_FILE"):
        load_settings()


class _Response:
    def __init__(self, errors: list[tuple[Any, ...]]) -> None:
        self.topic_errors = errors


def test_topic_creation_errors_name_the_topic_and_the_reason() -> None:
    errors = topic_errors(
        _Response(
            [
                ("ok", 0, None),
                ("there", 36, "already exists"),
                ("denied", 29, "Authorization failed."),
                ("rf", 38, "Unable to replicate the partition 3 time(s)"),
                ("busy", 7, "timed out"),
            ]
        )
    )
    lines = [str(e) for e in errors]
    assert "topic denied: TOPIC_AUTHORIZATION_FAILED (Authorization failed.)" in lines[0]
    assert "topic rf: INVALID_REPLICATION_FACTOR" in lines[1]
    assert "SAGA_REPLICATION_FACTOR" in lines[1]
    assert isinstance(errors[0], ConfigurationError)
    assert not isinstance(errors[2], ConfigurationError)  # retriable: tried again
    assert len(errors) == 3
