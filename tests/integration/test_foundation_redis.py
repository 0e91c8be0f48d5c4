"""Redis under everything: atomic Lua scripts, and data that survives a hard restart."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.ports import free_ports

# Read-check-write in one script: only atomic execution keeps the counter exact.
INCR_IF_EQUAL = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], current + 1)
return 1
"""


async def test_lua_compare_and_set_admits_one_writer_per_version(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    key = f"{{{prefix}}}counter"
    script = redis_client.register_script(INCR_IF_EQUAL)

    async def writer() -> int:
        wins = 0
        for version in range(200):
            wins += int(await script(keys=[key], args=[version]))
        return wins

    wins = await asyncio.gather(*(writer() for _ in range(4)))
    assert sum(wins) == 200  # every version was claimed by exactly one writer
    assert int(await redis_client.get(key) or 0) == 200


@pytest.fixture
def private_redis(tmp_path: Path) -> tuple[Path, int]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs a local redis-server binary to kill and restart")
    return tmp_path, free_ports(1)[0]


def start_redis(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )


async def wait_ping(client: aioredis.Redis) -> None:
    for _ in range(200):
        try:
            if await client.ping():
                return
        except (ConnectionError, aioredis.ConnectionError):
            await asyncio.sleep(0.05)
    raise AssertionError("redis did not answer PING")


async def test_data_survives_a_hard_kill_with_aof(private_redis: tuple[Path, int]) -> None:
    workdir, port = private_redis
    client = aioredis.Redis(port=port)
    proc = start_redis(workdir, port)
    try:
        await wait_ping(client)
        async with client.pipeline(transaction=True) as pipe:
            for i in range(100):
                pipe.hset("orders", f"o{i}", i)
            await pipe.execute()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        await client.connection_pool.disconnect()
        proc = start_redis(workdir, port)
        await wait_ping(client)
        survived = await client.hgetall("orders")
    finally:
        await client.aclose()
        proc.terminate()
        proc.wait()
    assert len(survived) == 100
    assert survived[b"o99"] == b"99"
