"""The replica wait's policy (runtime/replica_wait.py), on a Redis whose replica count
the test sets: strict, adaptive and off, and a replica leaving and coming back."""

from __future__ import annotations

from typing import Any

from saga_worker.runtime.redis_client import RedisClient
from saga_worker.runtime.replica_wait import RECHECK_S, ReplicaWait


class CountingRedis:
    """Answers INFO replication with `replicas`, and counts the reads."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.reads = 0

    async def info(self, section: str) -> dict[str, Any]:
        assert section == "replication"
        self.reads += 1
        return {"role": "master", "connected_slaves": self.replicas}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def policy(redis: CountingRedis, configured: int | None, clock: Clock) -> ReplicaWait:
    client: RedisClient = redis  # type: ignore[assignment]
    return ReplicaWait(client, configured, clock=clock)


async def test_strict_waits_for_its_count_and_refuses_fewer_without_asking() -> None:
    redis, clock = CountingRedis(0), Clock()
    wait = policy(redis, 2, clock)
    assert await wait.wanted("redis", None) == 2
    assert await wait.enough("redis", None, 2, 2)
    assert not await wait.enough("redis", None, 1, 2)
    assert redis.reads == 0
    assert wait.describe() == "2"
    assert not wait.off


async def test_zero_is_off() -> None:
    wait = policy(CountingRedis(3), 0, Clock())
    assert wait.off
    assert wait.describe() == "0"


async def test_adaptive_waits_for_one_replica_where_there_is_one() -> None:
    redis, clock = CountingRedis(2), Clock()
    wait = policy(redis, None, clock)
    assert await wait.wanted("redis", None) == 1
    assert await wait.wanted("redis", None) == 1
    assert redis.reads == 1, "the count is read once, not per batch"
    assert wait.describe() == "adaptive"
    assert not wait.off


async def test_adaptive_refuses_a_short_wait_while_the_replica_is_still_there() -> None:
    redis, clock = CountingRedis(1), Clock()
    wait = policy(redis, None, clock)
    wanted = await wait.wanted("redis", None)
    assert not await wait.enough("redis", None, 0, wanted), "a lagging replica: retry"
    assert redis.reads == 2, "a short wait reads the count again"


async def test_adaptive_writes_unwaited_without_replica_and_waits_again_once_one_joins() -> None:
    redis, clock = CountingRedis(1), Clock()
    wait = policy(redis, None, clock)
    assert await wait.wanted("redis", None) == 1
    redis.replicas = 0  # its replica was promoted away, or died
    assert await wait.enough("redis", None, 0, 1), "no replica left: the write stands"
    assert await wait.wanted("redis", None) == 0
    redis.replicas = 1
    clock.now += RECHECK_S / 2
    assert await wait.wanted("redis", None) == 0, "not read again before RECHECK_S"
    clock.now += RECHECK_S
    assert await wait.wanted("redis", None) == 1, "a replica joined: waited for again"


async def test_adaptive_counts_each_node_on_its_own() -> None:
    redis, clock = CountingRedis(0), Clock()
    wait = policy(redis, None, clock)
    assert await wait.wanted("a", None) == 0
    redis.replicas = 1
    assert await wait.wanted("b", None) == 1
    assert await wait.wanted("a", None) == 0
