"""Every documented error path of the CLI and the workers: one line on stderr, its exit code."""

from __future__ import annotations

import pytest

from tests.integration.saga_support import Run, cli, one_error_line
from tests.services import Services

DOWN_REDIS = "redis://:hunter2@127.0.0.1:1/0"


def last_line(run: Run, code: int) -> str:
    """Workers log to stderr before they stop: the last line is the error."""
    assert run.code == code, run
    line = run.err.strip().splitlines()[-1]
    assert line.startswith("error: "), run.err
    return line


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"REDIS_URL": "redis://:hunter2@host:port/0"}, "invalid setting REDIS_URL"),
        ({"SAGA_LOG_LEVEL": "LOUD"}, "invalid setting SAGA_LOG_LEVEL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM"),
        (
            {"KAFKA_SASL_USERNAME": "saga", "KAFKA_SASL_PASSWORD": "hunter2"},
            "KAFKA_SECURITY_PROTOCOL=PLAINTEXT never sends it",
        ),
        ({"KAFKA_SASL_PASSWORD_FILE": "/no/such/file"}, "KAFKA_SASL_PASSWORD_FILE: cannot read"),
    ],
)
@pytest.mark.parametrize("command", [("orchestrator",), ("show", "x"), ("list",), ("stats",)])
async def test_bad_settings_are_one_line_and_exit_2(
    services: Services, prefix: str, command: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    run = await cli(services, prefix, *command, **env)
    line = one_error_line(run, 2)
    assert expected in line
    assert "hunter2" not in run.err + run.out


@pytest.mark.parametrize(
    "command",
    [("show", "x"), ("retry", "x"), ("abort", "x"), ("signal", "x", "approval", "--data", "{}")],
)
async def test_operator_commands_with_redis_down_are_one_line_and_exit_1(
    services: Services, prefix: str, command: tuple[str, ...]
) -> None:
    run = await cli(services, prefix, *command, REDIS_URL=DOWN_REDIS)
    line = one_error_line(run, 1)
    assert line.startswith("error: Redis: Error 111"), line
    assert "hunter2" not in run.err + run.out


@pytest.mark.parametrize(
    ("env", "reason", "hint"),
    [
        ({"SAGA_REPLICATION_FACTOR": "3"}, "INVALID_REPLICATION_FACTOR", "SAGA_REPLICATION_FACTOR"),
        ({"SAGA_TOPIC_CONFIGS": "no.such.config=1"}, "INVALID_CONFIG", "SAGA_TOPIC_CONFIGS"),
    ],
)
async def test_a_topic_the_broker_will_not_create_is_named_with_its_reason(
    services: Services, prefix: str, env: dict[str, str], reason: str, hint: str
) -> None:
    line = last_line(await cli(services, prefix, "orchestrator", **env), 2)
    assert f"Kafka refused to create topic {prefix}" in line, line
    assert reason in line
    assert hint in line


async def test_topic_configs_are_applied(services: Services, prefix: str) -> None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # noqa: PLC0415

    from saga_worker.runtime.kafka_admin import kafka_admin  # noqa: PLC0415
    from saga_worker.runtime.kafka_clients import KafkaConnection, ensure_topics  # noqa: PLC0415

    conn = KafkaConnection(services.bootstrap_servers)
    topic = f"{prefix}configured"
    await ensure_topics(conn, [topic], partitions=1, configs={"retention.ms": "3600000"})
    async with kafka_admin(conn) as admin:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": None})]
        )
    entries = response.resources[0][4]
    assert ("retention.ms", "3600000") in [(e[0], e[1]) for e in entries]
