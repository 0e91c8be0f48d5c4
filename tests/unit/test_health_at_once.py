"""A worker serves its health endpoints from its first second, before Kafka and Redis
answer: `/healthz` 200 (alive: a liveness probe must not kill a worker that only
waits), `/readyz` 503 (not ready: no traffic yet). SIGTERM while waiting exits 0 at once.
The real `saga-worker` command, as a container runs it, against names that never resolve.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.http_probe import http_status
from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]


async def statuses(port: int, within_s: float = 20) -> tuple[int, int]:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await http_status(port, "/healthz"), await http_status(port, "/readyz")
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    "command", [["orchestrator"], ["participant", "inventory"], ["all"]], ids=" ".join
)
async def test_health_answers_while_kafka_and_redis_do_not(command: list[str]) -> None:
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "kafka.invalid:9092",
        "REDIS_URL": "redis://redis.invalid:6379/0",
        "SAGA_HEALTH_PORT": str(port),
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(  # noqa: ASYNC220 - a child we stop and wait for below
        [sys.executable, "-m", "saga_worker", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert await statuses(port) == (200, 503)
        await asyncio.sleep(1.5)  # still waiting, retrying: still alive, still not ready
        assert await statuses(port) == (200, 503)
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err.decode()[-2000:]
