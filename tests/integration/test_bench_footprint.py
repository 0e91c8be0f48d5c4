"""The benchmark's Redis bytes per finished saga counts every key of the run's prefix."""

from __future__ import annotations

import redis.asyncio as aioredis

from benchmarks.footprint import ORCHESTRATOR, glob_escape, part_of, saga_bytes
from saga_worker.runtime.keys import KeySpace


def test_a_key_belongs_to_the_participant_whose_hash_tag_follows_the_prefix() -> None:
    assert part_of("run:{inventory}:stock", "run:") == "inventory"
    assert part_of("run:{payment}:reply:cmd/x", "run:") == "payment"
    assert part_of("run:saga:{0b6f}", "run:") == ORCHESTRATOR
    assert part_of("run:status:completed", "run:") == ORCHESTRATOR


def test_a_prefix_is_matched_literally() -> None:
    assert glob_escape("a*b?[c]\\d") == "a\\*b\\?\\[c\\]\\\\d"


async def test_every_key_under_the_prefix_counts_and_only_those(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys = KeySpace(prefix)
    for saga in ("s1", "s2"):
        await redis_client.hset(keys.saga(saga), mapping={"v": "3", "s": "x" * 300})
    await redis_client.zadd(keys.by_status("completed", 0), {"s1": 1, "s2": 2})
    await redis_client.set(f"{prefix}{{inventory}}:reply:cmd/1", "y" * 500, px=60_000)
    await redis_client.hset(f"{prefix}{{inventory}}:reservations", "s1", "z" * 200)
    await redis_client.xadd(f"{prefix}{{notification}}:notices", {"kind": "confirmation"})
    await redis_client.set(f"{prefix[:-1]}-other:{{inventory}}:stock", "not this run's")

    measured = await saga_bytes(redis_client, keys, ["s1", "s2"])

    mine = [k async for k in redis_client.scan_iter(match=f"{prefix}*")]
    assert len(mine) == 6
    every = sum([int(await redis_client.memory_usage(k, samples=0) or 0) for k in mine])
    assert measured["bytes"] == every
    assert measured["finished"] == 2
    assert measured["total"] == round(every / 2)
    assert measured["keys_by_part"] == {"inventory": 2, "notification": 1, ORCHESTRATOR: 3}
    assert set(measured["by_part"]) == {"inventory", "notification", ORCHESTRATOR}
    assert abs(sum(measured["by_part"].values()) - measured["total"]) <= 2  # rounding
    assert measured["orchestrator_total"] == measured["hash"] + measured["index_share"]
    assert measured["total"] > measured["orchestrator_total"]
    await redis_client.delete(f"{prefix[:-1]}-other:{{inventory}}:stock")
