"""The one way workers and the CLI create a Redis client: never without timeouts.

A Redis that stops answering must fail a command within SAGA_REDIS_TIMEOUT_S (a
redis-py TimeoutError, retried where the work is), not hang the worker's batch.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from saga_worker.settings import Settings


def make_redis(settings: Settings) -> Redis:
    timeout = settings.saga_redis_timeout_s
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if settings.redis_username is not None:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    url = settings.redis_url.get_secret_value()
    if url.startswith("rediss://"):
        for option, value in (
            ("ssl_ca_certs", settings.redis_ssl_ca_certs),
            ("ssl_certfile", settings.redis_ssl_certfile),
            ("ssl_keyfile", settings.redis_ssl_keyfile),
        ):
            if value is not None:
                options[option] = value
    return Redis.from_url(url, **options)
