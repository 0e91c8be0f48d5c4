"""Waiting for Kafka and Redis at start, instead of exiting while they are away.

A worker started during a broker or Redis restart would otherwise crash and be
restarted by its supervisor until the dependency is back: a crash loop that
hides real failures. It waits here with capped backoff, one warning per try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka.errors import KafkaError
from redis.exceptions import RedisClusterException, RedisError

from saga_worker.runtime.kafka_clients import KafkaConnection, ensure_topics
from saga_worker.runtime.redis_client import RedisClient

log = logging.getLogger(__name__)

FIRST_PAUSE_S = 0.2
MAX_PAUSE_S = 5.0


async def wait_for_dependencies(
    conn: KafkaConnection,
    topics: Sequence[str],
    *,
    partitions: int,
    redis: RedisClient,
    stopping: asyncio.Event,
    worker: str,
) -> bool:
    """Creates missing topics and reaches Redis; False if asked to stop before both answered."""
    pause = FIRST_PAUSE_S
    while True:
        try:
            await ensure_topics(conn, topics, partitions=partitions)
            await redis.ping()
            return True
        except (KafkaError, RedisError, RedisClusterException, OSError) as exc:
            log.warning(
                "waiting for Kafka and Redis", extra={"worker": worker, "error": repr(exc)[:200]}
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pause)
        if stopping.is_set():
            return False
        pause = min(pause * 2, MAX_PAUSE_S)
