"""The store on Redis Cluster, without one (issue 15): every script call names keys of
one hash slot, a batch is one call per slot in one pipeline, index hints go before the
sagas, and the client is chosen by the URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from participants.order_fulfillment import ORDER_FULFILLMENT
from saga_worker.engine.decide import decide
from saga_worker.engine.events import StartSaga
from saga_worker.errors import ConfigurationError
from saga_worker.participant.keys import ParticipantKeys
from saga_worker.runtime.clock import utcnow
from saga_worker.runtime.keys import KeySpace, shard_of
from saga_worker.runtime.redis_client import cluster_url, make_redis, redis_from_url
from saga_worker.runtime.store import OutboxEntry, RedisSagaStore, SagaWrite
from saga_worker.settings import load_settings
from tests.unit.support import ORDER_DATA


def slot(key: str) -> int:
    return key_slot(key.encode())


class FakePipeline:
    def __init__(self, log: list[list[tuple[Any, ...]]]) -> None:
        self.commands: list[tuple[Any, ...]] = []
        log.append(self.commands)

    def execute_command(self, *args: Any, **_: Any) -> None:
        self.commands.append(args)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        results: list[Any] = []
        for command in self.commands:
            name, numkeys = command[0], command[2]
            if name == "EVALSHA":  # save_sagas: a new version per saga (two keys each)
                results.append([1] * (numkeys // 2))
            else:
                results.append(1)
        return results


class FakeRedis:
    def __init__(self) -> None:
        self.pipelines: list[list[tuple[Any, ...]]] = []

    @asynccontextmanager
    async def pipeline(self, transaction: bool = False) -> Any:
        yield FakePipeline(self.pipelines)


def writes(n: int) -> list[SagaWrite]:
    out = []
    for i in range(n):
        saga_id = f"OrderFulfillment:o-{i}"
        state = decide(None, StartSaga(saga_id, ORDER_DATA), utcnow(), ORDER_FULFILLMENT).state
        assert state is not None
        entry = OutboxEntry(f"{saga_id}:m1", "orders.reserve", saga_id, {})
        timers = {"t:reserve_inventory:1": state.updated_at + timedelta(seconds=10)}
        out.append(SagaWrite(saga_id, 0, state, outbox=[entry], timers_set=timers))
    return out


def calls(pipeline: list[tuple[Any, ...]]) -> Iterator[tuple[str, list[str]]]:
    for command in pipeline:
        numkeys = command[2]
        yield command[0], list(command[3 : 3 + numkeys])


async def test_on_a_cluster_every_call_names_one_slot_and_hints_go_first() -> None:
    fake = FakeRedis()
    keys = KeySpace("p:", shards=4)
    store = RedisSagaStore(fake, keys, cluster=True)  # type: ignore[arg-type]
    batch = writes(40)
    assert await store.save(batch) == set()
    hints, sagas = fake.pipelines  # two round trips: the hints', then the sagas'
    for pipeline in (hints, sagas):
        for _, call_keys in calls(pipeline):
            assert len({slot(k) for k in call_keys}) == 1, call_keys
    assert {name for name, _ in calls(hints)} == {"EVAL"}
    assert {name for name, _ in calls(sagas)} == {"EVALSHA"}
    saga_slots = {slot(keys.saga(w.saga_id)) for w in batch}
    assert len(sagas) == len(saga_slots)  # one call per slot, not one per saga
    assert len(hints) == len({keys.shard(w.saga_id) for w in batch}) <= 4


async def test_on_a_single_redis_one_pipeline_carries_the_hints_then_the_sagas() -> None:
    fake = FakeRedis()
    store = RedisSagaStore(fake, KeySpace("p:", shards=4), cluster=False)  # type: ignore[arg-type]
    assert await store.save(writes(40)) == set()
    (pipeline,) = fake.pipelines
    assert [name for name, _ in calls(pipeline)] == ["EVAL", "EVALSHA"]


async def test_acknowledging_names_one_slot_per_call() -> None:
    fake = FakeRedis()
    store = RedisSagaStore(fake, KeySpace("p:", shards=8), cluster=True)  # type: ignore[arg-type]
    await store.acknowledged(writes(30))
    (pipeline,) = fake.pipelines
    for _, call_keys in calls(pipeline):
        assert len({slot(k) for k in call_keys}) == 1


def test_index_keys_of_a_shard_share_its_slot_and_shards_spread() -> None:
    keys = KeySpace("p:", shards=8)
    for shard in keys.all_shards:
        same = {
            slot(keys.timers(shard)),
            slot(keys.pending_outboxes(shard)),
            slot(keys.by_status("pending", shard)),
        }
        assert len(same) == 1
    assert len({slot(keys.timers(s)) for s in keys.all_shards}) == 8
    entry = ("OrderFulfillment", "approval", "o-1")
    wait_key = keys.wait_index(*entry)
    assert slot(wait_key) == slot(keys.timers(shard_of("OrderFulfillment:approval:o-1", 8)))


def test_the_shard_of_a_saga_is_stable_and_one_shard_is_shard_zero() -> None:
    assert shard_of("OrderFulfillment:o-1", 4) == shard_of("OrderFulfillment:o-1", 4)
    assert {shard_of(f"s{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    assert KeySpace("p:", shards=1).shard("anything") == 0


@pytest.mark.parametrize(
    ("url", "plain", "named"),
    [
        ("redis+cluster://u:pw@h:7000/0", "redis://u:pw@h:7000/0", True),
        ("rediss+cluster://h:7000", "rediss://h:7000", True),
        ("redis://h:6379/0", "redis://h:6379/0", False),
    ],
)
def test_a_cluster_is_named_by_the_scheme(url: str, plain: str, named: bool) -> None:
    assert cluster_url(url) == (plain, named)


def test_every_node_a_cluster_url_names_is_a_startup_node() -> None:
    client = redis_from_url("redis+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001,h3:7002/0")
    assert isinstance(client, RedisCluster)
    named = {(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()}
    assert named == {("10.0.0.1", 7000), ("10.0.0.2", 7001), ("h3", 7002)}


def test_the_client_follows_the_scheme_or_the_setting() -> None:
    assert isinstance(redis_from_url("redis+cluster://127.0.0.1:7000/0"), RedisCluster)
    assert isinstance(redis_from_url("redis://127.0.0.1:7000/0", cluster=True), RedisCluster)
    assert isinstance(redis_from_url("redis://127.0.0.1:6379/0"), Redis)


def test_spread_participant_records_share_a_slot_per_saga_and_spread_over_sagas() -> None:
    keys = ParticipantKeys("p:", "payment", spread=True)
    for saga in ("s1", "s2", "s3"):
        assert slot(keys.reply("cmd/1", saga)) == slot(keys.effect(saga, "pay"))
    assert len({slot(keys.effect(f"s{i}", "pay")) for i in range(50)}) > 40
    kept = ParticipantKeys("p:", "payment")  # a single Redis's layout, as before
    assert kept.reply("cmd/1", "s1") == "p:{payment}:reply:cmd/1"
    assert kept.effect("s1", "pay") == "p:{payment}:effect:s1/pay"


def test_settings_take_a_cluster_url_naming_several_nodes_and_check_each_part() -> None:
    url = "rediss+cluster://saga:pw@10.0.0.1:7000,10.0.0.2:7001/0"
    assert load_settings(redis_url=url).redis_url.get_secret_value() == url
    with pytest.raises(ConfigurationError, match="REDIS_URL: not a Redis URL"):
        load_settings(redis_url="redis+cluster://10.0.0.1:port/0")


def test_the_cluster_client_takes_the_acl_user_and_tls_files_of_the_settings(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection\n")
    client = make_redis(
        load_settings(
            redis_url="rediss+cluster://10.0.0.1:7000/0",
            redis_username="saga",
            redis_password="pw",
            redis_ssl_ca_certs=str(ca),
        )
    )
    assert isinstance(client, RedisCluster)
    kwargs = client.nodes_manager.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("saga", "pw")
    assert kwargs["ssl_ca_certs"] == str(ca)
