"""What finished sagas keep in Redis: every key of the run, not only the saga hashes.

`saga_bytes` sums MEMORY USAGE (SAMPLES 0: every element counted, not an estimate)
of every key under the run's key prefix, found by SCAN, and divides it by the sagas
finished (the terminal status indexes): the orchestrator's keys (saga hashes, start
markers, its indexes) and each participant's (stored replies, effect records,
reservations, charges, shipments, notices, their indexes and tallies; stock, balances
and catalogue too, a constant shared by every saga). That is `total`, the headline
`redis_bytes_per_saga`; `by_part` breaks it down per participant (its hash tag) and
for the orchestrator (the rest). Read it once the run has drained, so that no saga
in flight counts, and before any record's retention runs out.

`hash` + `index_share` = `orchestrator_total` is the orchestrator's own storage per
saga, as measured before (and nothing more): the mean MEMORY USAGE of a sample of saga
hashes (`<ns>saga:{<id>}`) plus each saga's share of the status, timer and outbox
indexes. run.py adds `used_memory_delta_per_saga`: INFO memory's growth over the run
per saga, Redis's own overhead included.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster

from saga_worker.engine.state import TERMINAL, SagaStatus
from saga_worker.runtime.keys import KeySpace
from saga_worker.runtime.redis_client import RedisClient

SAMPLE = 200
SCAN_BATCH = 1000  # keys per SCAN call, and MEMORY USAGE calls per pipelined round trip
ORCHESTRATOR = "orchestrator"


async def used_memory(redis: RedisClient) -> int:
    """INFO memory's used_memory: of every primary, summed, on a cluster."""
    if isinstance(redis, RedisCluster):
        found = await redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
        return sum(int(info["used_memory"]) for info in found.values())
    info: dict[str, Any] = await redis.info("memory")
    return int(info["used_memory"])


async def server_info(redis: RedisClient) -> dict[str, Any]:
    """INFO server of the Redis, or of one node of a cluster (they run the same build)."""
    if isinstance(redis, RedisCluster):
        found = await redis.info("server", target_nodes=RedisCluster.RANDOM)
        return dict(found)
    return dict(await redis.info("server"))


async def saga_bytes(redis: RedisClient, keys: KeySpace, saga_ids: Sequence[str]) -> dict[str, Any]:
    """Bytes per finished saga: every key under the run's prefix (`total`, `by_part`),
    and the orchestrator's own share as measured before (`hash` + `index_share`)."""
    finished = 0
    for status in TERMINAL:
        for shard in keys.all_shards:
            finished += int(await redis.zcard(keys.by_status(status.value, shard)))
    own = await _orchestrator_share(redis, keys, saga_ids, finished)
    usage, counts = await prefix_usage(redis, keys.namespace)
    every = sum(usage.values())
    return {
        "total": _per(every, finished),
        "by_part": {part: _per(size, finished) for part, size in sorted(usage.items())},
        "keys": sum(counts.values()),
        "keys_by_part": dict(sorted(counts.items())),
        "bytes": every,
        **own,
        "finished": finished,
    }


async def prefix_usage(redis: RedisClient, prefix: str) -> tuple[Counter[str], Counter[str]]:
    """MEMORY USAGE and number of the keys under `prefix`, by part: the participant whose
    hash tag follows the prefix (`<prefix>{inventory}:...`), else the orchestrator."""
    usage: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    batch: list[bytes] = []

    async def measure() -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=0)
            sizes = await pipe.execute()
        for key, size in zip(batch, sizes, strict=True):
            part = part_of(key.decode(errors="replace"), prefix)
            usage[part] += int(size or 0)  # None: gone (expired) since the SCAN
            counts[part] += 1
        batch.clear()

    async for key in redis.scan_iter(match=glob_escape(prefix) + "*", count=SCAN_BATCH):
        batch.append(key)
        if len(batch) >= SCAN_BATCH:
            await measure()
    if batch:
        await measure()
    return usage, counts


def part_of(key: str, prefix: str) -> str:
    """`inventory` for `<prefix>{inventory}:stock`; the orchestrator for the rest (its
    saga keys carry a hash tag too, but after a name: `<prefix>saga:{<id>}`)."""
    rest = key[len(prefix) :]
    if rest.startswith("{") and "}" in rest:
        return rest[1 : rest.index("}")]
    return ORCHESTRATOR


def glob_escape(text: str) -> str:
    """`text` matched literally by a Redis glob pattern (SCAN MATCH)."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


async def _orchestrator_share(
    redis: RedisClient, keys: KeySpace, saga_ids: Sequence[str], finished: int
) -> dict[str, Any]:
    sample = list(saga_ids[:SAMPLE])
    hashes = [await _usage(redis, keys.saga(s)) for s in sample]
    index_keys = [
        key
        for shard in keys.all_shards
        for key in (
            keys.timers(shard),
            keys.pending_outboxes(shard),
            *(keys.by_status(s.value, shard) for s in SagaStatus),
        )
    ]
    index_total = sum([await _usage(redis, k) for k in index_keys])
    per_saga_hash = statistics.fmean(hashes) if hashes else 0.0
    index_share = index_total / finished if finished else 0.0
    return {
        "hash": round(per_saga_hash),
        "index_share": round(index_share),
        "orchestrator_total": round(per_saga_hash + index_share),
        "sampled": len(hashes),
    }


def _per(size: int, finished: int) -> int:
    return round(size / finished) if finished else 0


async def _usage(redis: RedisClient, key: str) -> int:
    # SAMPLES 0: every element counted, not an estimate from the first few.
    return int(await redis.memory_usage(key, samples=0) or 0)
