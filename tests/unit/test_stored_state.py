"""A finished saga's state is stored deflated; a running one's, and any older plain
JSON, are read as before."""

from __future__ import annotations

from dataclasses import replace

import orjson

from saga_worker.engine.state import SagaStatus
from saga_worker.runtime.store import decode_state, encode_state

from .test_state import finished

# The sample's finished state deflates to about a third of its JSON.
MAX_DEFLATED_SHARE = 0.5


def test_a_finished_state_is_stored_deflated_and_read_back() -> None:
    state = finished({})
    plain = orjson.dumps(state.to_dict())
    stored = encode_state(state)
    assert stored[:1] != b"{"
    assert len(stored) < MAX_DEFLATED_SHARE * len(plain), (len(stored), len(plain))
    assert decode_state(stored) == state


def test_a_running_state_stays_plain_json() -> None:
    state = replace(finished({}), status=SagaStatus.PENDING)
    stored = encode_state(state)
    assert stored == orjson.dumps(state.to_dict())
    assert decode_state(stored) == state


def test_a_finished_state_saved_plain_by_an_older_version_is_read() -> None:
    state = finished({})
    assert decode_state(orjson.dumps(state.to_dict())) == state
