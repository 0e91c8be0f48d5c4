"""Starts are idempotent by their saga's start marker: the processor's decisions, without
a broker (the store is the in-memory fake; the Redis scripts are tested in
tests/integration/test_start_markers.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from participants.app import app as sample_app
from participants.app import saga_id_for_order
from saga_worker.engine.events import StartSaga, StepSucceeded
from saga_worker.engine.state import SagaStatus
from saga_worker.errors import ConfigurationError
from saga_worker.observability.metrics import OrchestratorMetrics
from saga_worker.runtime.inbound import start_digest, to_inbound
from saga_worker.runtime.processor import START_CONFLICT, Applied, Inbound, SagaProcessor
from saga_worker.runtime.store import SagaStore
from saga_worker.settings import load_settings
from saga_worker.wire import TRACEPARENT, Topics
from schemas import topics
from tests.integration.saga_support import order as order_body

from .memory_store import MemoryStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER_TRACE = "00-11111111111111111111111111111111-2222222222222222-01"
SID = saga_id_for_order("o-1")


def order(order_id: str = "o-1", **changes: Any) -> dict[str, Any]:
    return order_body(order_id, **changes)


def start(body: dict[str, Any], trace: str | None = None) -> Inbound:
    value = orjson.dumps(body)
    headers = [(TRACEPARENT, trace.encode())] if trace else []
    record = ConsumerRecord(
        topics.ORDER_CREATED, 0, 7, 0, 0, b"k", value, None, 1, len(value), headers
    )
    item = to_inbound(record, sample_app, Topics(""))
    assert isinstance(item, Inbound)
    return item


def processor(store: MemoryStore) -> SagaProcessor:
    return SagaProcessor(cast(SagaStore, store), sample_app.registry, lambda: T0)


async def complete(run: SagaProcessor, store: MemoryStore, saga_id: str) -> None:
    """Answers every command the saga sends with success until it completes."""
    for _ in range(10):
        state, _ = store.rows[saga_id]
        if state.finished:
            assert state.status is SagaStatus.COMPLETED
            return
        write = store.saved[-1]
        replies = [
            Inbound(
                saga_id,
                StepSucceeded(
                    e.payload["step_name"],
                    {},
                    e.message_id,
                    e.payload["attempt"],
                    f"r-{e.message_id}",
                ),
                f"r-{e.message_id}",
            )
            for e in write.outbox
            if "step_name" in e.payload
        ]
        await run.apply(replies)
    raise AssertionError("the saga did not complete")


# -- the digest ------------------------------------------------------------------------


def test_a_redelivered_start_has_the_same_digest_whatever_its_id_version_or_trace() -> None:
    first = start(order(message_id="m-1"), TRACE)
    again = start(
        {"schema_version": 1, **dict(reversed(order().items())), "message_id": "m-2"},
        OTHER_TRACE,
    )
    untraced = start(order())
    assert first.start_digest is not None
    assert len(first.start_digest) == 32
    int(first.start_digest, 16)  # hex
    assert first.start_digest == again.start_digest == untraced.start_digest
    assert first.business_key == "o-1"
    assert first.saga_id == again.saga_id == SID


def test_a_start_saying_anything_else_has_another_digest() -> None:
    base = start(order()).start_digest
    assert start(order(payment_method="wallet")).start_digest != base
    assert start(order(note="gift")).start_digest != base  # unknown fields are kept: they count
    assert start(order(order_id="o-2")).start_digest != base


def test_the_digest_leaves_out_the_trace_the_saga_keeps() -> None:
    data = {"order_id": "o-1", "traceparent": TRACE}
    assert start_digest(data) == start_digest({"order_id": "o-1"})


# -- the processor's decisions -----------------------------------------------------------


async def test_the_start_that_creates_a_saga_sets_its_marker() -> None:
    store = MemoryStore()
    item = start(order())
    applied = await processor(store).apply([item])
    [write] = applied.writes
    assert write.expected_version == 0
    assert write.start_digest == item.start_digest
    assert store.markers == {SID: item.start_digest}
    assert store.marker_loads == [{SID}]


async def test_replies_and_later_writes_neither_read_nor_set_a_marker() -> None:
    store = MemoryStore()
    run = processor(store)
    await run.apply([start(order())])
    await complete(run, store, SID)
    assert all(loads == set() for loads in store.marker_loads[1:])
    assert [w.start_digest for w in store.saved[1:]] == [None] * (len(store.saved) - 1)


async def test_the_same_start_after_its_saga_expired_is_ignored_not_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    run = processor(store)
    await run.apply([start(order(message_id="m-1"), TRACE)])
    await complete(run, store, SID)
    store.expire(SID)
    caplog.set_level(logging.INFO, logger="saga_worker.runtime.processor")

    again = start(order(message_id="m-2"), OTHER_TRACE)  # a replay, under another id
    applied = await run.apply([again])

    assert applied.writes == []
    assert applied.rejected == []
    assert applied.ignored == 1
    assert applied.repeated_starts == [again]
    assert SID not in store.rows
    [line] = [r for r in caplog.records if "repeated start" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert line.__dict__["saga_ids"] == [SID]
    assert line.__dict__["business_keys"] == ["o-1"]


async def test_the_same_start_while_its_saga_is_kept_is_a_plain_duplicate() -> None:
    store = MemoryStore()
    run = processor(store)
    await run.apply([start(order(message_id="m-1"))])
    applied = await run.apply([start(order(message_id="m-2")), start(order(message_id="m-1"))])
    assert applied.writes == []
    assert applied.rejected == []
    assert applied.ignored == 2
    assert applied.repeated_starts == []


def assert_conflict(applied: Applied, item: Inbound) -> None:
    assert applied.writes == []
    [refused] = applied.rejected
    assert refused.inbound is item
    assert refused.code == START_CONFLICT
    assert SID in refused.reason
    assert "'o-1'" in refused.reason
    assert applied.ignored == 0


async def test_a_start_with_another_body_for_a_running_saga_is_a_conflict() -> None:
    store = MemoryStore()
    run = processor(store)
    await run.apply([start(order())])
    # Without a message_id both starts get the id derived from the business key: the
    # marker is checked first, so the second is refused, not taken for a duplicate.
    other = start(order(payment_method="wallet"))
    assert other.message_id == start(order()).message_id
    assert_conflict(await run.apply([other]), other)


async def test_a_start_with_another_body_after_its_saga_expired_is_a_conflict() -> None:
    store = MemoryStore()
    run = processor(store)
    await run.apply([start(order())])
    await complete(run, store, SID)
    store.expire(SID)
    other = start(order(payment_method="wallet"), TRACE)
    assert_conflict(await run.apply([other]), other)
    assert SID not in store.rows


async def test_two_different_starts_in_one_batch_the_first_wins() -> None:
    store = MemoryStore()
    first, second = start(order(message_id="m-1")), start(order(payment_method="wallet"))
    applied = await processor(store).apply([first, second])
    [write] = applied.writes
    assert write.start_digest == first.start_digest
    assert write.state.data["payment_method"] == "card"
    [refused] = applied.rejected
    assert refused.inbound is second
    assert refused.code == START_CONFLICT


async def test_a_saga_started_before_markers_existed_keeps_the_old_behaviour() -> None:
    store = MemoryStore()
    run = processor(store)
    legacy = start(order())
    await run.apply([Inbound(SID, legacy.event, legacy.message_id, start=legacy.start)])
    assert store.markers == {}
    # Another body is a duplicate start while the saga is kept, as before.
    applied = await run.apply([start(order(payment_method="wallet", message_id="m-9"))])
    assert (applied.writes, applied.rejected, applied.ignored) == ([], [], 1)
    # Once it expired, nothing remembers it: the start starts a saga again, marked now.
    await complete(run, store, SID)
    store.expire(SID)
    again = start(order())
    applied = await run.apply([again])
    [write] = applied.writes
    assert write.expected_version == 0
    assert write.state.status is SagaStatus.PENDING
    assert store.markers == {SID: again.start_digest}


async def test_a_start_without_a_digest_is_decided_as_before() -> None:
    store = MemoryStore()
    item = start(order())
    assert isinstance(item.event, StartSaga)
    plain = Inbound(SID, item.event, item.message_id, start=item.start)
    applied = await processor(store).apply([plain])
    [write] = applied.writes
    assert write.start_digest is None
    assert store.marker_loads == [set()]


# -- what operators see --------------------------------------------------------------------


def test_repeated_starts_are_counted_by_saga_type() -> None:
    metrics = OrchestratorMetrics()
    metrics.repeated_starts(["OrderFulfillment", "OrderFulfillment"])
    text = metrics.render().decode()
    assert 'saga_worker_starts_repeated_total{definition="OrderFulfillment"} 2.0' in text


def test_start_markers_are_kept_90_days_unless_told() -> None:
    assert load_settings().start_retention.days == 90
    assert (
        load_settings(saga_retention_s=60, saga_start_retention_s=60).saga_start_retention_s == 60
    )


def test_start_markers_kept_shorter_than_sagas_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigurationError, match="SAGA_START_RETENTION_S") as caught:
        load_settings(saga_retention_s=3600, saga_start_retention_s=60)
    assert "SAGA_RETENTION_S" in str(caught.value)
    assert "\n" not in str(caught.value)
