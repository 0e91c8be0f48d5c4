"""No store call breaks on a large saga, and dead hints hide nothing (issue 12,
unbounded growth). On the real Redis: Lua 5.1's unpack fails past about 8,000
values, after the script's earlier writes were applied."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from participants.order_fulfillment import ORDER_FULFILLMENT
from saga_worker.engine.decide import decide
from saga_worker.engine.events import StartSaga
from saga_worker.engine.state import SagaState, SagaStatus, to_ms
from saga_worker.runtime.clock import utcnow
from saga_worker.runtime.keys import KeySpace
from saga_worker.runtime.store import OutboxEntry, RedisSagaStore, SagaWrite
from tests.unit.support import ORDER_DATA

MANY = 9_000  # past unpack's limit of about 8,000


def started(saga_id: str, ago: timedelta = timedelta(0)) -> SagaState:
    state = decide(None, StartSaga(saga_id, ORDER_DATA), utcnow() - ago, ORDER_FULFILLMENT).state
    assert state is not None
    return state


async def test_a_saga_with_more_consumed_ids_than_unpack_takes_saves_loads_and_finishes(
    redis_client: Redis, prefix: str
) -> None:
    keys = KeySpace(prefix)
    store = RedisSagaStore(redis_client, keys)
    state = started("big-saga")
    consumed = [f"msg-{i}" for i in range(MANY)]
    assert await store.save([SagaWrite("big-saga", 0, state, consumed=consumed)]) == set()
    loaded = (await store.load({"big-saga": consumed}))["big-saga"]
    assert (loaded.version, len(loaded.seen)) == (1, MANY)
    # finishing drops every consumed id, in the same script call as the state
    done = replace(state, status=SagaStatus.COMPLETED, timers={})
    assert await store.save([SagaWrite("big-saga", 1, done)]) == set()
    fields = await redis_client.hkeys(keys.saga("big-saga"))
    assert sorted(fields) == [b"s", b"v"]
    after = (await store.load({"big-saga": []}))["big-saga"]
    assert after.state is not None
    assert (after.version, after.state.status) == (2, SagaStatus.COMPLETED)


async def test_more_timers_than_unpack_takes_are_released_and_cancelled(
    redis_client: Redis, prefix: str
) -> None:
    keys = KeySpace(prefix)
    store = RedisSagaStore(redis_client, keys)
    timers = [("s", f"t:step:{i}") for i in range(MANY)]
    shard = keys.timers(keys.shard("s"))
    await redis_client.zadd(shard, {f"s|{t}": 1 for _, t in timers})
    await store.release_timers(timers)
    assert await redis_client.zcard(shard) == 0
    # and acknowledging a decision that cancelled as many
    await redis_client.zadd(shard, {f"s|{t}": 1 for _, t in timers})
    state = started("s")
    await store.acknowledged([SagaWrite("s", 0, state, timers_cancelled={t for _, t in timers})])
    assert await redis_client.zcard(shard) == 0


async def test_dead_outbox_hints_are_dropped_and_hide_no_stale_outbox(
    redis_client: Redis, prefix: str
) -> None:
    keys = KeySpace(prefix)
    store = RedisSagaStore(redis_client, keys)
    live = started("live-saga", ago=timedelta(minutes=5))
    entry = OutboxEntry("live-saga:m1", "orders.reserve", "live-saga", {"x": 1})
    assert await store.save([SagaWrite("live-saga", 0, live, outbox=[entry])]) == set()
    # 600 hints of sagas whose hashes expired, older than the live one
    oldest = to_ms(live.updated_at) - 60_000
    for i in range(600):
        gone = f"gone-{i}"
        await redis_client.zadd(keys.pending_outboxes(keys.shard(gone)), {f"{gone}|1": oldest + i})
    # and one of a saga whose outbox was emptied
    await redis_client.hset(keys.saga("empty"), mapping={"v": 1, "s": "{}"})
    await redis_client.zadd(keys.pending_outboxes(keys.shard("empty")), {"empty|1": oldest})
    found = await store.stale_outboxes(utcnow(), limit=500)
    assert found.entries == {"live-saga": [entry]}
    assert not found.unreadable
    left = [m for shard in keys.all_shards for m in await hints(redis_client, keys, shard)]
    assert left == [b"live-saga|1"]


@pytest.mark.parametrize("limit", [1, 3])
async def test_the_stale_read_still_returns_at_most_limit_sagas(
    redis_client: Redis, prefix: str, limit: int
) -> None:
    keys = KeySpace(prefix)
    store = RedisSagaStore(redis_client, keys)
    for i in range(5):
        sid = f"live-{i}"
        entry = OutboxEntry(f"{sid}:m1", "orders.reserve", sid, {})
        await store.save([SagaWrite(sid, 0, started(sid, timedelta(minutes=5)), outbox=[entry])])
    found = await store.stale_outboxes(utcnow(), limit=limit)
    assert len(found.entries) == limit
    assert sum([len(await hints(redis_client, keys, s)) for s in keys.all_shards]) == 5


async def hints(redis: Redis, keys: KeySpace, shard: int) -> list[bytes]:
    members: list[bytes] = await redis.zrange(keys.pending_outboxes(shard), 0, -1)  # type: ignore[assignment]
    return members
