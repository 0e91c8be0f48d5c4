"""Deleting a deployment's data: every topic under its topic prefix, every key under
its key prefix. For runs that should leave nothing behind (the demo, the benchmark)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from saga_worker.runtime.redis_client import RedisClient
from saga_worker.settings import Settings

KEYS_PER_UNLINK = 2000


async def discard(settings: Settings, redis: RedisClient) -> None:
    if not settings.saga_topic_prefix or not settings.saga_key_prefix:
        raise ValueError("refusing to discard a deployment without topic and key prefixes")
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{settings.saga_key_prefix}*", count=KEYS_PER_UNLINK):
        batch.append(key)
        if len(batch) >= KEYS_PER_UNLINK:
            await redis.unlink(*batch)
            batch = []
    if batch:
        await redis.unlink(*batch)
    admin = AIOKafkaAdminClient(**settings.kafka.options())
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(settings.saga_topic_prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
