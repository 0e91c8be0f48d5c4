"""A participant whose Redis is in trouble retries its batch; it never answers a failure.

Each test runs its own redis-server on a free port: they break it (out of memory,
paused), which must not disturb the tests sharing the main Redis.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.exceptions import RedisError

from participants.payment import PAYMENT
from participants.seed import SeedData, load_seed
from saga_worker.participant.runtime import ParticipantWorker
from saga_worker.settings import Settings
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.http_probe import http_status
from tests.integration.kafka_state import wait_caught_up
from tests.integration.saga_support import (
    Bus,
    bus,
    inbound,
    running_participants,
    settings_for,
)
from tests.ports import free_ports
from tests.services import Services

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server")

SEED = SeedData(stock={"sku-a": 10}, balances={"alice": 10_000})


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[str]:
    (port,) = free_ports(1)
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped in the teardown
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--dir", str(tmp_path), "--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url)

    async def answers() -> bool:
        try:
            return bool(await client.ping())
        except RedisError:
            return False

    try:
        await assert_eventually(answers, within=10, message="private redis up")
        yield url
    finally:
        await client.aclose()
        server.terminate()
        server.wait()


def payment(saga_id: str) -> dict[str, Any]:
    return {
        "saga_id": saga_id,
        "order_id": f"order-{saga_id}",
        "customer_id": "alice",
        "items": [{"sku": "sku-a", "quantity": 2, "unit_price": 1_000}],
        "payment_method": "card",
        "shipping_address": {"country": "DE", "city": "Berlin", "postal_code": "10115"},
        "step_name": "process_payment",
        "command_id": f"{saga_id}:process_payment:a1",
        "attempt": 1,
    }


async def _seeded(services: Services, prefix: str, url: str, **overrides: Any) -> Settings:
    settings = settings_for(services, prefix, **overrides).model_copy(
        update={"redis_url": SecretStr(url)}
    )
    client = aioredis.Redis.from_url(url)
    try:
        await load_seed(client, prefix, SEED)
    finally:
        await client.aclose()
    return settings


async def retries(caplog: pytest.LogCaptureFixture) -> int:
    """How often a worker in this process has retried a batch so far."""
    return sum("batch failed; retrying" in r.getMessage() for r in caplog.records)


async def answered(settings: Settings, worker: ParticipantWorker, b: Bus) -> list[Any]:
    """Every reply and dead letter, once the worker committed every command: it commits a
    batch after its replies are acknowledged, so none is still to come."""
    await wait_caught_up(settings.kafka, inbound(settings, participants=[worker]))
    return await b.all_sent()


# Writes paused (scripts included), until the test unpauses: the worker's batch hangs on
# Redis for as long as the test needs to see what it must, however slow the machine.
PAUSED_MS = 120_000


@pytest.fixture
def retry_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="saga_worker.runtime.consumer_loop")
    return caplog


async def test_a_participant_whose_redis_is_out_of_memory_answers_nothing_then_succeeds_once(
    services: Services,
    prefix: str,
    private_redis: str,
    retry_logs: pytest.LogCaptureFixture,
) -> None:
    settings = await _seeded(services, prefix, private_redis)
    admin = aioredis.Redis.from_url(private_redis)
    try:
        async with running_participants(settings, [PAYMENT]) as (worker,), bus(settings) as b:
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")
            await b.send(t.PROCESS_PAYMENT, payment("s1"))
            # Read, and refused by Redis twice: retried, not answered (a failed reply
            # would burn one of the saga's attempts).
            await assert_eventually(
                lambda: retries(retry_logs), lambda n: n >= 2, message="retried twice"
            )
            assert await b.all_sent() == []
            await admin.config_set("maxmemory", "0")
            done = await b.wait_for(1, t.STEP_COMPLETED)
            replies = await answered(settings, worker, b)
        assert [r.topic for r in replies] == [settings.topics.physical(t.STEP_COMPLETED)]
        assert orjson.loads(done[0].value)["result"]["amount"] == 2_000
    finally:
        await admin.aclose()


async def test_a_paused_redis_times_out_and_the_batch_is_retried_until_it_answers(
    services: Services,
    prefix: str,
    private_redis: str,
    retry_logs: pytest.LogCaptureFixture,
) -> None:
    settings = await _seeded(services, prefix, private_redis, saga_redis_timeout_s=1.0)
    admin = aioredis.Redis.from_url(private_redis)
    try:
        async with running_participants(settings, [PAYMENT]) as (worker,), bus(settings) as b:
            await admin.client_pause(PAUSED_MS, all=False)
            await b.send(t.PROCESS_PAYMENT, payment("s1"))
            # With no socket timeout the worker would sit in its batch for the whole pause.
            await assert_eventually(
                lambda: retries(retry_logs),
                lambda n: n >= 1,
                within=30,
                message="batch retried mid-pause",
            )
            await admin.client_unpause()
            done = await b.wait_for(1, t.STEP_COMPLETED)
            replies = await answered(settings, worker, b)
        assert [r.topic for r in replies] == [settings.topics.physical(t.STEP_COMPLETED)]
        assert orjson.loads(done[0].value)["saga_id"] == "s1"
    finally:
        await admin.aclose()


async def test_liveness_turns_false_while_redis_hangs_a_batch_and_true_once_it_answers(
    services: Services, prefix: str, private_redis: str
) -> None:
    settings = await _seeded(
        services, prefix, private_redis, saga_redis_timeout_s=0.5, saga_stall_after_s=1.5
    )
    admin = aioredis.Redis.from_url(private_redis)
    try:
        async with running_participants(settings, [PAYMENT]) as (worker,), bus(settings) as b:
            health = worker.health
            await health.start()  # port 0 in settings means "off"; bind an ephemeral one here
            try:
                assert await http_status(health.port, "/healthz") == 200
                await admin.client_pause(PAUSED_MS, all=False)
                await b.send(t.PROCESS_PAYMENT, payment("s1"))
                # The batch is retried, not lost, yet a platform must learn the worker is stuck.
                await assert_eventually(
                    lambda: http_status(health.port, "/healthz"), lambda c: c == 503, within=30
                )
                await admin.client_unpause()
                await b.wait_for(1, t.STEP_COMPLETED)
                await assert_eventually(
                    lambda: http_status(health.port, "/healthz"), lambda c: c == 200, within=10
                )
            finally:
                await health.stop()
    finally:
        await admin.aclose()
