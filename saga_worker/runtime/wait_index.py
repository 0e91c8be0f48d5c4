"""The correlation index's entries: where a saga is found by its waits' events.

Pure: the keys themselves are named in keys.py, and correlation.py reads them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from saga_worker.engine.definition import SagaDefinition

MAX_RAW_VALUE = 64  # longer correlation values are indexed by their digest

# (saga type, wait step, value token): one entry of the correlation index
IndexEntry = tuple[str, str, str]


def value_token(value: object) -> str | None:
    """The index's spelling of a correlation value: a string or an integer as it is
    (digested when long), anything else cannot correlate (None)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if len(text) <= MAX_RAW_VALUE and text.isprintable() and ":" not in text:
        return text
    return "h:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def index_entries(definition: SagaDefinition, data: Mapping[str, Any]) -> list[IndexEntry]:
    """Where a saga with this data is found by the events its waits listen for."""
    entries: list[IndexEntry] = []
    for step in definition.waits:
        assert step.wait is not None
        token = value_token(data.get(step.wait.data_field))
        if token is not None:
            entries.append((definition.name, step.name, token))
    return entries
