from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.services import CHOICE, Source, choose_source, images


def never() -> bool:
    raise AssertionError("docker must not be probed when the choice is made without it")


BOTH = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "REDIS_URL": "redis://r"}


@pytest.mark.parametrize(
    ("env", "docker", "expected"),
    [
        (BOTH, never, Source.ENV),
        ({}, lambda: True, Source.TESTCONTAINERS),
        ({}, lambda: False, Source.LOCAL),
        # Half a configuration is not a configuration: fall through to the next choice.
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092"}, lambda: False, Source.LOCAL),
        ({"REDIS_URL": "redis://r"}, lambda: True, Source.TESTCONTAINERS),
        ({CHOICE: "auto"}, lambda: False, Source.LOCAL),
        ({CHOICE: ""}, lambda: True, Source.TESTCONTAINERS),
    ],
)
def test_source_is_chosen_in_order(
    env: dict[str, str], docker: Callable[[], bool], expected: Source
) -> None:
    assert choose_source(env, docker) is expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("testcontainers", Source.TESTCONTAINERS),
        ("TestContainers", Source.TESTCONTAINERS),
        ("local", Source.LOCAL),
        ("env", Source.ENV),
    ],
)
def test_a_forced_source_wins_over_the_environment(choice: str, expected: Source) -> None:
    assert choose_source({**BOTH, CHOICE: choice}, never) is expected


def test_a_forced_environment_needs_both_variables() -> None:
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS and REDIS_URL"):
        choose_source({CHOICE: "env", "REDIS_URL": "redis://r"}, never)


def test_an_unknown_choice_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="auto, env, testcontainers, local"):
        choose_source({CHOICE: "docker"}, never)


def test_images_default_to_the_official_ones_of_the_pinned_versions() -> None:
    from devstack.stack import read_versions  # noqa: PLC0415

    kafka = read_versions()["KAFKA_VERSION"]
    assert images({}) == (f"apache/kafka:{kafka}", "redis:7.4")
    chosen = {"SAGA_KAFKA_IMAGE": "mine/kafka:1", "SAGA_REDIS_IMAGE": "mine/redis:2"}
    assert images(chosen) == ("mine/kafka:1", "mine/redis:2")
