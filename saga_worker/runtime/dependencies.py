"""Waiting for Kafka and Redis at start, instead of exiting while they are away.

A worker started during a broker or Redis restart would otherwise crash and be
restarted by its supervisor until the dependency is back: a crash loop that
hides real failures. It waits here with capped backoff, one warning per try.

Causes that waiting cannot fix end the wait with a ConfigurationError (one line,
exit code 2): a broker that refuses our credentials or certificates
(saga_worker.runtime.kafka_checks), a topic the broker will not create, a Redis that
refuses the login (wrong user or password) or the commands or keys this worker needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka.errors import KafkaError
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from saga_worker.errors import ConfigurationError
from saga_worker.runtime.kafka_checks import diagnose
from saga_worker.runtime.kafka_clients import KafkaConnection, ensure_topics
from saga_worker.runtime.redis_acl import missing_permissions
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
    replication: int | None = None,
    configs: dict[str, str] | None = None,
    key_prefix: str = "saga-worker:",
) -> bool:
    """Creates missing topics and reaches Redis; False if asked to stop before both answered."""
    pause = FIRST_PAUSE_S
    while True:
        try:
            try:
                await ensure_topics(
                    conn, topics, partitions=partitions, replication=replication, configs=configs
                )
            except (KafkaError, OSError):
                fatal = await diagnose(conn)
                if fatal is not None:
                    raise fatal from None
                raise
            await check_redis(redis, key_prefix)
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


async def check_redis(redis: RedisClient, key_prefix: str) -> None:
    """PING; a refused login or a command the ACL user may not run is a ConfigurationError."""
    try:
        await redis.ping()
        denied = await missing_permissions(redis, key_prefix)
        if denied:
            raise ConfigurationError(
                f"Redis: the ACL user may not run {', '.join(denied)} on keys {key_prefix}*;"
                " grant what the README's Security section lists"
            )
    except AuthenticationError as exc:
        raise ConfigurationError(
            f"Redis refused the login ({exc}): check REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD"
        ) from None
    except NoPermissionError as exc:
        raise ConfigurationError(f"Redis: {redis_permission_hint(exc)}") from None
    except ResponseError as exc:
        if "WRONGPASS" in str(exc) or "NOAUTH" in str(exc):
            raise ConfigurationError(
                f"Redis refused the login ({exc}): check REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD"
            ) from None
        raise


def redis_permission_hint(exc: BaseException) -> str:
    return (
        f"the ACL user may not do what saga-worker needs ({str(exc).strip()[:200]});"
        " grant the commands and key patterns listed in the README's Security section"
    )
