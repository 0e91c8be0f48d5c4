"""Health endpoints, retention of finished sagas, and a clean stop on SIGTERM."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from participants.app import saga_id_for_order
from tests.eventually import assert_eventually
from tests.http_probe import http_status
from tests.integration.saga_support import (
    OrchestratorProcess,
    SagaReader,
    ScriptedParticipants,
    order,
    prepare_topics,
    running_orchestrator,
    send_orders,
    settings_for,
)
from tests.services import Services


async def test_health_and_readiness_answer_while_running(services: Services, prefix: str) -> None:
    settings = settings_for(services, prefix, saga_health_port=0)
    async with running_orchestrator(settings) as worker:
        health = worker.health
        assert health is not None
        await health.start()  # port 0 in settings means "off"; bind an ephemeral one here
        try:
            assert await http_status(health.port, "/healthz") == 200
            assert await http_status(health.port, "/readyz") == 200
            assert await http_status(health.port, "/nope") == 404
            worker.stop()
            assert await http_status(health.port, "/readyz") == 503
        finally:
            await health.stop()


async def test_finished_sagas_expire_after_the_retention(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix, saga_retention_s=1.0)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    key = settings.keys.saga(saga_id_for_order("r-1"))
    async with running_orchestrator(settings), scripted.running():
        await send_orders(settings.kafka, prefix, [order("r-1")])
        await SagaReader(redis_client, settings).wait_status("r-1", "completed")
        # Read at once, not after the shutdown (which may outlast the second): expiring
        # within the retention, or already gone; -1 (kept for ever) fails.
        ttl = await redis_client.pttl(key)
    assert ttl == -2 or 0 < ttl <= 1000, ttl
    await assert_eventually(lambda: redis_client.exists(key), lambda n: n == 0, within=10)


@pytest.mark.timeout(120)
async def test_sigterm_drains_and_exits_zero_within_seconds(
    services: Services, prefix: str, redis_client: Redis
) -> None:
    settings = settings_for(services, prefix)
    await prepare_topics(settings)
    proc = OrchestratorProcess(settings)
    scripted = ScriptedParticipants(settings.kafka, prefix)
    async with scripted.running():
        proc.start()
        try:
            await send_orders(settings.kafka, prefix, [order("s-1")])
            await SagaReader(redis_client, settings).wait_status("s-1", "completed", within=60)
            started = time.monotonic()
            assert proc.terminate() == 0
            assert time.monotonic() - started < 10
        finally:
            proc.kill()
