"""Settings that the wire, Kafka or Redis could not honour are refused at start, in one line."""

from __future__ import annotations

from typing import Any

import pytest

from saga_worker.errors import ConfigurationError
from saga_worker.settings import load_settings


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"saga_topic_prefix": "p" * 50}, "SAGA_TOPIC_PREFIX"),
        ({"saga_topic_prefix": "has space."}, "SAGA_TOPIC_PREFIX"),
        ({"saga_retention_s": 0.0001}, "SAGA_RETENTION_S"),
    ],
)
def test_a_setting_the_system_cannot_honour_is_refused(
    overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named) as caught:
        load_settings(**overrides)
    assert "\n" not in str(caught.value)


def test_the_longest_prefix_and_shortest_retention_are_accepted() -> None:
    settings = load_settings(saga_topic_prefix="p-." * 16 + "x", saga_retention_s=1)
    assert len(settings.saga_topic_prefix) == 49
