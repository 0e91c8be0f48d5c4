"""hiredis packs commands byte for byte as redis-py would, and every client uses it."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from saga_worker.runtime.redis_client import redis_from_url
from saga_worker.runtime.redis_packing import (
    HiredisConnection,
    HiredisSSLConnection,
    HiredisUnixConnection,
)

COMMANDS = [
    ("SET", "key", "value"),
    ("EVALSHA", "f" * 40, 2, "k1", "k2", 0, -7, 2**70, 1.5, 1e20, 1 / 3),
    ("HSET", b"bytes-key", b"\x00\xff\r\n", "unicode é ü 😀", ""),
    ("CLUSTER SLOTS",),
    (b"CONFIG GET", b"maxmemory"),
    ("SET", "big", "x" * 100_000),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_hiredis_packs_the_bytes_redis_py_packs(command: tuple[Any, ...]) -> None:
    ours, theirs = HiredisConnection(), Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))


def test_a_pipeline_packs_the_same_bytes() -> None:
    ours, theirs = HiredisConnection(), Connection()
    assert b"".join(ours.pack_commands(COMMANDS)) == b"".join(theirs.pack_commands(COMMANDS))


def test_what_hiredis_refuses_gets_redis_py_packing_or_its_error() -> None:
    ours = HiredisConnection()
    view = memoryview(b"payload")
    assert b"".join(ours.pack_command("SET", "k", view)) == b"".join(
        Connection().pack_command("SET", "k", view)
    )
    with pytest.raises(DataError):
        ours.pack_command("SET", "k", True)
    with pytest.raises(DataError):
        ours.pack_command("SET", "k", None)


def test_another_encoding_keeps_redis_py_packing() -> None:
    ours = HiredisConnection(encoding="latin-1")
    packed = b"".join(ours.pack_command("SET", "k", "é"))
    assert packed == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", HiredisConnection),
        ("rediss://127.0.0.1:6379/0", HiredisSSLConnection),
        ("unix:///tmp/redis.sock", HiredisUnixConnection),
    ],
)
def test_every_single_node_client_packs_with_hiredis(url: str, expected: type) -> None:
    client = redis_from_url(url, timeout=1.0)
    assert client.connection_pool.connection_class is expected  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", HiredisConnection),
        ("rediss+cluster://127.0.0.1:7000", HiredisSSLConnection),
    ],
)
def test_cluster_clients_pack_with_hiredis_on_every_node(url: str, expected: type) -> None:
    client = redis_from_url(url, timeout=1.0)
    assert isinstance(client, RedisCluster)
    assert client.connection_kwargs["connection_class"] is expected  # nodes found later
    nodes = client.nodes_manager.startup_nodes.values()
    assert nodes
    assert all(node.connection_class is expected for node in nodes)
