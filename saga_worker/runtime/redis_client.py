"""The one way workers and the CLI create a Redis client: never without timeouts.

A Redis that stops answering must fail a command within SAGA_REDIS_TIMEOUT_S (a
redis-py TimeoutError, retried where the work is), not hang the worker's batch.
"""

from __future__ import annotations

from redis.asyncio import Redis

from saga_worker.settings import Settings


def make_redis(settings: Settings) -> Redis:
    timeout = settings.saga_redis_timeout_s
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
