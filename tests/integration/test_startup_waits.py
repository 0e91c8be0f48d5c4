"""A worker started while Redis is away waits for it instead of crashing."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from participants.app import app
from saga_worker.runtime.orchestrator import Orchestrator
from tests.eventually import assert_eventually
from tests.integration.saga_support import settings_for
from tests.ports import free_ports
from tests.services import Services


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_the_orchestrator_waits_for_redis_then_runs(
    services: Services, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="saga_worker.runtime.dependencies")
    (port,) = free_ports(1)
    settings = settings_for(services, prefix).model_copy(
        update={"redis_url": SecretStr(f"redis://127.0.0.1:{port}/0")}
    )
    worker = Orchestrator(settings, app)
    task = asyncio.create_task(worker.run())
    redis: subprocess.Popen[bytes] | None = None
    try:
        # Nothing listens on the port yet: the worker found no Redis, waited and tried
        # again, and is still there, waiting.
        async def tries() -> int:
            if task.done():
                task.result()  # it stopped: its error, not a timeout
            return sum("waiting for Kafka and Redis" in r.getMessage() for r in caplog.records)

        await assert_eventually(tries, lambda n: n >= 2, message="tried Redis twice")
        assert not task.done()
        assert not worker.ready
        redis = subprocess.Popen(  # noqa: ASYNC220 - started once, never waited on here
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(tmp_path),
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )
        await assert_eventually(lambda: _ready(worker, task), within=30, message="ready")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        if redis is not None:
            redis.terminate()
            redis.wait()


async def _ready(worker: Orchestrator, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
    return worker.ready
