"""What finished sagas keep in Redis.

`saga_bytes`: MEMORY USAGE of a sample of saga hashes (`<ns>saga:{<id>}`), plus
each saga's share of the orchestrator's global indexes (status, timer and
outbox sorted sets: their MEMORY USAGE divided by the finished sagas). That is
the orchestrator's own storage per saga. `used_memory_delta` is INFO memory's
growth over the run divided by the sagas finished: everything, the
participants' records of each command included.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from saga_worker.engine.state import TERMINAL, SagaStatus
from saga_worker.runtime.keys import KeySpace

SAMPLE = 200


async def used_memory(redis: Redis) -> int:
    info: dict[str, Any] = await redis.info("memory")
    return int(info["used_memory"])


async def saga_bytes(redis: Redis, keys: KeySpace, saga_ids: Sequence[str]) -> dict[str, float]:
    """Mean bytes of a saga hash, the per-saga index share, and their sum."""
    sample = list(saga_ids[:SAMPLE])
    hashes = [await _usage(redis, keys.saga(s)) for s in sample]
    finished = 0
    for status in TERMINAL:
        finished += int(await redis.zcard(keys.by_status(status.value)))
    index_keys = [
        keys.timers,
        keys.pending_outboxes,
        *(keys.by_status(s.value) for s in SagaStatus),
    ]
    index_total = sum([await _usage(redis, k) for k in index_keys])
    per_saga_hash = statistics.fmean(hashes) if hashes else 0.0
    index_share = index_total / finished if finished else 0.0
    return {
        "hash": round(per_saga_hash),
        "index_share": round(index_share),
        "total": round(per_saga_hash + index_share),
        "sampled": len(hashes),
        "finished": finished,
    }


async def _usage(redis: Redis, key: str) -> int:
    # SAMPLES 0: every element counted, not an estimate from the first few.
    return int(await redis.memory_usage(key, samples=0) or 0)
