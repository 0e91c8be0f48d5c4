"""One failing saga stops neither the timers nor the outbox sweeper (issue 12, poison).

The consumer path dead-letters a record that breaks its batch and goes on; the timer
task and the sweeper must isolate a failing saga too, or the saga kills the task on
every instance in turn. On the real Kafka and Redis: sagas are saved as an instance
running their definition saves them, then an orchestrator meets them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
import pytest
from redis.asyncio import Redis

from participants.app import saga_id_for_order
from saga_worker import App
from saga_worker.engine.decide import decide
from saga_worker.engine.definition import DefinitionRegistry, SagaDefinition
from saga_worker.engine.events import StartSaga, TimerFired
from saga_worker.engine.state import SagaState, SagaStatus
from saga_worker.runtime.clock import utcnow
from saga_worker.runtime.keys import OUTBOX_PREFIX
from saga_worker.runtime.orchestrator import Orchestrator
from saga_worker.runtime.processor import Inbound, SagaProcessor
from saga_worker.runtime.store import RedisSagaStore, SagaWrite
from saga_worker.settings import Settings
from schemas import OrderCreated
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.kafka_state import read_to_end
from tests.integration.saga_support import (
    FAST_FULFILLMENT,
    SagaReader,
    fast_fulfillment,
    metric,
    order,
    settings_for,
)
from tests.services import Services

# Timeouts short enough to be due by the time an orchestrator is up.
V1 = fast_fulfillment(timeout=timedelta(milliseconds=200))
V2 = dataclasses.replace(V1, version=2)  # what the next deploy runs
FIRST_TIMEOUT = "t:reserve_inventory:1"

T = TypeVar("T")


def app_of(definition: SagaDefinition, *older: SagaDefinition) -> App:
    app = App("timer-isolation")
    app.saga(
        definition,
        start_topic=t.ORDER_CREATED,
        start_model=OrderCreated,
        business_key="order_id",
        older_versions=older,
    )
    return app


@dataclasses.dataclass
class Instance:
    worker: Orchestrator
    task: asyncio.Task[None]

    def alive(self) -> bool:
        if self.task.done():
            self.task.result()  # raises what stopped it
            raise AssertionError("the orchestrator stopped")
        return True

    def watch(self, probe: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        """`probe`, failing at once (with the cause) if the orchestrator stopped."""

        async def watched() -> T:
            self.alive()
            return await probe()

        return watched

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.worker, name, **labels)


@contextlib.asynccontextmanager
async def running(settings: Settings, app: App) -> AsyncIterator[Instance]:
    worker = Orchestrator(settings, app)
    instance = Instance(worker, asyncio.create_task(worker.run()))

    async def ready() -> bool:
        return instance.alive() and worker.ready

    await assert_eventually(ready, within=30, message="orchestrator ready")
    try:
        yield instance
    finally:
        worker.stop()
        await asyncio.wait_for(instance.task, timeout=30)


async def saved_saga(
    redis: Redis, settings: Settings, definition: SagaDefinition, order_id: str, *, sent: bool
) -> SagaWrite:
    """What an instance running `definition` saves when an order starts a saga: its state,
    its first step's timeout and its outbox, which Kafka acknowledged if `sent`."""
    store = RedisSagaStore(redis, settings.keys)
    saga_id = saga_id_for_order(order_id)
    start = StartSaga(saga_id, order(order_id), f"start:{order_id}")
    applied = await SagaProcessor(store, DefinitionRegistry([definition]), utcnow).apply(
        [Inbound(saga_id, start, start.message_id, start=definition)]
    )
    (write,) = applied.writes
    if sent:
        await store.acknowledged(applied.writes)
    return write


def timed_out(state: SagaState | None) -> bool:
    return state is not None and any(
        "attempt 1 timed out" in (entry.detail or "") for entry in state.history
    )


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_a_timer_of_a_version_this_instance_lacks_waits_for_one_that_has_it(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix)
    await saved_saga(redis_client, settings, V1, "o-old", sent=True)
    new = await saved_saga(redis_client, settings, V2, "o-new", sent=True)
    reader = SagaReader(redis_client, settings)
    member = f"{new.saga_id}|{FIRST_TIMEOUT}"
    async with running(settings, app_of(V1)) as v1_only:

        async def deferrals() -> float:
            return v1_only.metric("saga_worker_timers_deferred_total", version="2")

        # Both first timeouts are due: one claim takes them together. The healthy
        # one fires; the v2 saga's goes back un-fired, due again a few seconds on.
        await assert_eventually(
            v1_only.watch(lambda: reader.state("o-old")),
            timed_out,
            message="the v1 saga's timeout fired",
        )
        await assert_eventually(
            v1_only.watch(deferrals), lambda n: n >= 1, message="the v2 saga's timer deferred"
        )
        timers = settings.keys.timers(settings.keys.shard(new.saga_id))

        async def due_in() -> tuple[float | None, int]:
            return await redis_client.zscore(timers, member), await redis_ms(redis_client)

        # The metric counts the deferral before the timer is put back: until then its
        # score is the claim's lease (30 s on), not the retry's (5 s on).
        score, _ = await assert_eventually(
            v1_only.watch(due_in),
            lambda found: found[0] is not None and 0 < found[0] - found[1] <= 5_000,
            message="the deferred timer is still scheduled, and not due again at once",
        )
        assert score is not None
        # A saga saved now, whose timeout is due 200 ms on: once it has fired, the timer
        # task has polled since the deferral, so it neither stopped nor spun on the timer.
        await saved_saga(redis_client, settings, V1, "o-later", sent=True)
        await assert_eventually(
            v1_only.watch(lambda: reader.state("o-later")),
            timed_out,
            message="a timer due after the deferral fired",
        )
        assert await redis_client.zscore(timers, member) == score
        assert v1_only.alive()
        assert await deferrals() == 1
        untouched = await reader.state("o-new")
        assert untouched is not None
        assert untouched.status is SagaStatus.PENDING
        assert untouched.to_dict() == new.state.to_dict()  # as saved, to the millisecond
    # The next deploy's instance fires it once it is due again.
    async with running(settings, app_of(V2, V1)) as both:
        await assert_eventually(
            both.watch(lambda: reader.state("o-new")),
            timed_out,
            within=30,
            message="the v2 saga's timeout fired on an instance that runs v2",
        )


async def test_a_saga_whose_decision_raises_loses_its_timer_and_the_rest_fire(
    services: Services,
    prefix: str,
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(services, prefix)
    await saved_saga(redis_client, settings, V1, "o-ok", sent=True)
    bad = await saved_saga(redis_client, settings, V1, "o-bad", sent=True)

    def decide_with_a_bug(state: Any, event: Any, now: datetime, definition: Any) -> Any:
        if state is not None and state.saga_id == bad.saga_id and isinstance(event, TimerFired):
            raise RuntimeError("an engine bug")
        return decide(state, event, now, definition)

    monkeypatch.setattr("saga_worker.runtime.processor.decide", decide_with_a_bug)
    reader = SagaReader(redis_client, settings)
    member = f"{bad.saga_id}|{FIRST_TIMEOUT}"
    async with running(settings, app_of(V1)) as instance:
        await assert_eventually(
            instance.watch(lambda: reader.state("o-ok")),
            timed_out,
            message="the healthy saga's timeout fired",
        )
        await assert_eventually(
            instance.watch(
                lambda: redis_client.zscore(
                    settings.keys.timers(settings.keys.shard(bad.saga_id)), member
                )
            ),
            lambda score: score is None,
            message="the failing saga's timer dropped",
        )
        assert instance.metric("saga_worker_timers_dropped_total") == 1
        assert instance.alive()
    untouched = await reader.state("o-bad")
    assert untouched is not None
    assert untouched.to_dict() == bad.state.to_dict()
    dropped = [r for r in caplog.records if "timer is dropped" in r.getMessage()]
    assert [(r.levelno, getattr(r, "saga_id", None)) for r in dropped] == [
        (logging.ERROR, bad.saga_id)
    ]


async def test_an_unreadable_outbox_is_set_aside_and_the_others_are_republished(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix, saga_outbox_sweep_after_s=1.0)  # stale after 1 s
    ok = await saved_saga(redis_client, settings, FAST_FULFILLMENT, "o-ok", sent=False)
    bad = await saved_saga(redis_client, settings, FAST_FULFILLMENT, "o-bad", sent=False)
    # An entry as a later version might write it, with a field this one does not know.
    (entry,) = bad.outbox
    field = OUTBOX_PREFIX + entry.message_id
    newer = orjson.dumps([entry.topic, entry.key, dict(entry.payload), [], {"priority": 1}])
    await redis_client.hset(settings.keys.saga(bad.saga_id), field, newer)
    keys = settings.keys
    pending = keys.pending_outboxes(keys.shard(bad.saga_id))
    ok_pending = keys.pending_outboxes(keys.shard(ok.saga_id))
    bad_hint, ok_hint = f"{bad.saga_id}|1", f"{ok.saga_id}|1"  # their writes of version 1
    first_seen = await redis_client.zscore(pending, bad_hint)
    async with running(settings, app_of(FAST_FULFILLMENT)) as instance:

        async def set_aside() -> float:
            return instance.metric("saga_worker_outboxes_set_aside_total")

        await assert_eventually(
            instance.watch(lambda: redis_client.zscore(ok_pending, ok_hint)),
            lambda score: score is None,
            message="the readable outbox republished and cleared",
        )
        await assert_eventually(
            instance.watch(set_aside), lambda n: n >= 1, message="the unreadable outbox set aside"
        )
        later = await redis_client.zscore(pending, bad_hint)
        assert first_seen is not None
        assert later is not None
        assert later > first_seen, "moved on, so it comes back a threshold later"
        assert await redis_client.hget(settings.keys.saga(bad.saga_id), field) == newer
        assert instance.alive()
    # The instance has stopped: whatever it sent is in the topic by now.
    sent = await read_to_end(settings.kafka, prefix + t.RESERVE_ITEMS)
    assert [r.key.decode() for r in sent] == [ok.saga_id]
