"""The one way workers and the CLI create a Redis client: never without timeouts.

A Redis that stops answering must fail a command within SAGA_REDIS_TIMEOUT_S (a
redis-py TimeoutError, retried where the work is), not hang the worker's batch.

A cluster is chosen by the URL's scheme, `redis+cluster://` (`rediss+cluster://` with
TLS; several nodes may be named, `redis+cluster://h1:7000,h2:7001/0`), or by
SAGA_REDIS_CLUSTER=1 with an ordinary `redis://` URL: the client is then
redis-py's cluster client, which finds every node from the one named, follows slot
moves and failovers, and takes the same user, password and TLS options as a single
node's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from saga_worker.runtime.redis_packing import packing_by_hiredis

if TYPE_CHECKING:  # settings.py checks URLs with this module's parsing
    from saga_worker.settings import Settings

RedisClient: TypeAlias = Redis | RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> tuple[str, bool]:
    """The URL redis-py takes, and whether it names a cluster by its scheme."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in CLUSTER_SCHEMES:
        return f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}", True
    return url, False


def redis_from_url(
    url: str, *, cluster: bool = False, timeout: float | None = None, **options: Any
) -> RedisClient:
    """A client for `url`, a cluster one when the scheme or `cluster` says so; `options`
    (user, password, TLS files) go to either client as they are."""
    plain, by_scheme = cluster_url(url)
    options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
    if by_scheme or cluster:
        # Several nodes may be named, `host1:7000,host2:7001`: the client starts from any
        # that answers, so a worker starting while one node is down still finds the rest.
        # db numbers do not exist on a cluster: a `/0` path is harmless, another refused.
        first, others = _split_hosts(plain)
        return _packed(RedisCluster.from_url(first, startup_nodes=others, **options))
    return _packed(Redis.from_url(plain, **options))


def _packed(redis: RedisClient) -> RedisClient:
    """`redis`, before its first connection, packing commands with hiredis
    (redis_packing.py)."""
    if isinstance(redis, RedisCluster):
        # A cluster client makes each node's connections from its connection kwargs:
        # the startup nodes' already, the nodes it discovers later from the kwargs.
        kwargs = redis.connection_kwargs
        kwargs["connection_class"] = packing_by_hiredis(kwargs["connection_class"])
        for node in redis.nodes_manager.startup_nodes.values():
            node.connection_class = packing_by_hiredis(node.connection_class)
    else:
        pool = redis.connection_pool
        pool.connection_class = packing_by_hiredis(pool.connection_class)
    return redis


def first_node_url(url: str) -> str:
    """`url` as redis-py's URL parser takes it: a cluster scheme as the plain one, and
    only the first of several nodes."""
    plain, by_scheme = cluster_url(url)
    return _split_hosts(plain)[0] if by_scheme else plain


def _split_hosts(url: str) -> tuple[str, list[ClusterNode]]:
    """The URL with its first host only, and the other hosts it names as nodes."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    credentials, at, hosts = netloc.rpartition("@")
    first, *others = hosts.split(",")
    nodes = []
    for other in others:
        host, _, port = other.rpartition(":")
        nodes.append(ClusterNode(host or other, int(port) if host else 6379))
    return f"{scheme}://{credentials}{at}{first}{slash}{path}", nodes


def make_redis(settings: Settings) -> RedisClient:
    options: dict[str, Any] = {}
    if settings.redis_username is not None:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    url = settings.redis_url.get_secret_value()
    if url.startswith(("rediss://", "rediss+cluster://")):
        for option, value in (
            ("ssl_ca_certs", settings.redis_ssl_ca_certs),
            ("ssl_certfile", settings.redis_ssl_certfile),
            ("ssl_keyfile", settings.redis_ssl_keyfile),
        ):
            if value is not None:
                options[option] = value
    return redis_from_url(
        url, cluster=settings.saga_redis_cluster, timeout=settings.saga_redis_timeout_s, **options
    )


def is_cluster(redis: object) -> bool:
    return isinstance(redis, RedisCluster)


async def run_script(
    redis: RedisClient, script: AsyncScript, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
) -> list[Any]:
    """One script over many (KEYS, ARGV) calls in one pipeline, raise_on_error=False.

    A node without the script cached (any node of a cluster at first, a restarted or
    newly promoted one later) answers NOSCRIPT and runs nothing: the script is loaded
    (on every primary) and those calls are sent again."""
    results = await _evalsha(redis, script.sha, calls)
    missing = [n for n, r in enumerate(results) if isinstance(r, NoScriptError)]
    if missing:
        await redis.script_load(script.script)
        again = await _evalsha(redis, script.sha, [calls[n] for n in missing])
        for n, result in zip(missing, again, strict=True):
            results[n] = result
    return results


async def _evalsha(
    redis: RedisClient, sha: str, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))
