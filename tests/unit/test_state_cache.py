"""Replies to sagas the processor saved last are decided without a load, and only when
that changes nothing about duplicates, conflicts or unknown outcomes (state_cache.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import cast

import pytest

from participants.app import app as sample_app
from participants.app import saga_id_for_order
from saga_worker.engine.events import StepSucceeded
from saga_worker.engine.state import SagaStatus
from saga_worker.errors import StoreUnavailableError
from saga_worker.runtime.processor import Inbound, SagaProcessor
from saga_worker.runtime.state_cache import StateCache
from saga_worker.runtime.store import SagaStore, SagaWrite

from .memory_store import MemoryStore
from .test_start_idempotency import T0, complete, order, start

SID = saga_id_for_order("o-1")


def processor(store: MemoryStore) -> SagaProcessor:
    return SagaProcessor(cast(SagaStore, store), sample_app.registry, lambda: T0)


def reply_to_last_command(store: MemoryStore) -> Inbound:
    [command] = [e for e in store.saved[-1].outbox if "step_name" in e.payload]
    event = StepSucceeded(
        command.payload["step_name"], {}, command.message_id, command.payload["attempt"]
    )
    message_id = f"{command.message_id}:completed"
    return Inbound(SID, replace(event, message_id=message_id), message_id)


async def test_a_saga_is_loaded_once_for_its_start_and_never_for_its_replies() -> None:
    store = MemoryStore()
    run = processor(store)
    await run.apply([start(order())])
    await complete(run, store, SID)
    assert store.loads == [{SID}]
    assert store.rows[SID][0].status is SagaStatus.COMPLETED


async def test_a_repeated_reply_is_loaded_and_ignored_as_without_the_cache() -> None:
    store = MemoryStore()
    run = processor(store)
    await run.apply([start(order())])
    reply = reply_to_last_command(store)
    await run.apply([reply])
    version = store.version(SID)
    again = await run.apply([reply])
    assert again.writes == []
    assert again.ignored == 1
    assert store.loads[-1] == {SID}  # the consumed ids decided it, as before
    assert store.version(SID) == version


async def test_a_saga_someone_else_wrote_since_is_loaded_and_decided_again() -> None:
    store = MemoryStore()
    run = processor(store)
    await run.apply([start(order())])
    state, version = store.rows[SID]
    store.rows[SID] = (state, version + 1)  # another instance saved it meanwhile
    applied = await run.apply([reply_to_last_command(store)])
    assert applied.conflicts == 1
    assert [w.expected_version for w in applied.writes] == [version + 1]
    assert store.loads == [{SID}, {SID}]


async def test_after_a_save_with_an_unknown_outcome_the_saga_is_loaded() -> None:
    store = MemoryStore()
    run = processor(store)
    await run.apply([start(order())])
    reply = reply_to_last_command(store)
    saved = store.save

    async def broken(writes: Sequence[SagaWrite]) -> set[str]:
        await saved(writes)  # applied, but the answer is lost
        raise StoreUnavailableError("redis: connection reset")

    store.save = broken  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        await run.apply([reply])
    store.save = saved  # type: ignore[method-assign]
    again = await run.apply([reply])  # the batch is retried: its reply was consumed
    assert again.ignored == 1
    assert store.loads[-1] == {SID}


async def test_the_cache_keeps_the_latest_sagas_and_no_finished_one() -> None:
    store = MemoryStore()
    await processor(store).apply([start(order(f"o-{n}")) for n in range(3)])
    writes = store.saved
    cache = StateCache(size=2)
    cache.saved(writes, lost=set())
    assert len(cache) == 2
    assert cache.row(writes[0].saga_id) is None  # the oldest made room
    row = cache.row(writes[2].saga_id)
    assert row is not None
    assert row.version == writes[2].expected_version + 1
    finished = replace(writes[2], state=replace(writes[2].state, status=SagaStatus.COMPLETED))
    cache.saved([finished], lost=set())
    assert cache.row(writes[2].saga_id) is None
    cache.saved([writes[1]], lost={writes[1].saga_id})
    assert cache.row(writes[1].saga_id) is None
