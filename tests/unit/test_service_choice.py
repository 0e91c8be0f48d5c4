from __future__ import annotations

import pytest

from tests.services import Source, choose_source


def never() -> bool:
    raise AssertionError("docker must not be probed when the environment names services")


@pytest.mark.parametrize(
    ("env", "docker", "expected"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "REDIS_URL": "redis://r"}, never, Source.ENV),
        ({}, lambda: True, Source.TESTCONTAINERS),
        ({}, lambda: False, Source.LOCAL),
        # Half a configuration is not a configuration: fall through to the next choice.
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092"}, lambda: False, Source.LOCAL),
        ({"REDIS_URL": "redis://r"}, lambda: True, Source.TESTCONTAINERS),
    ],
)
def test_source_is_chosen_in_order(env: dict[str, str], docker: object, expected: Source) -> None:
    assert callable(docker)
    assert choose_source(env, docker) is expected
