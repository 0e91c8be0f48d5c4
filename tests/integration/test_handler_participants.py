"""Handler participants on the real Redis and Kafka: once per step toward the outside system.

The store's behaviour suite (tests/unit/test_handler_participants.py) runs here again
against Redis and its Lua script; then whole workers answer commands from Kafka, and
one is killed between calling the outside system and storing the outcome.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from saga_worker import App
from saga_worker.participant.handler_store import RedisStepRecords, StepRecords
from saga_worker.participant.handlers import Handler, HandlerParticipant
from saga_worker.participant.knobs import CRASH_EXIT_CODE, Knobs
from saga_worker.participant.protocol import JsonObject, Kind
from saga_worker.participant.runtime import ParticipantWorker
from saga_worker.settings import Settings, load_settings
from saga_worker.wire import HEADER_ROOM
from saga_worker.wire import topics as t
from tests.eventually import assert_eventually
from tests.integration.saga_support import bus
from tests.services import Services, redis_client_for
from tests.unit import test_handler_participants as behaviour
from tests.unit.test_handler_participants import (
    CHARGE,
    REFUND,
    Charge,
    FakeGateway,
    pending,
    store_of,
)

REPO = Path(__file__).resolve().parents[2]
DIE_AFTER_CALL = "SAGA_TEST_GATEWAY_DIE_AFTER_CALL"


@pytest.fixture
def records(redis_client: aioredis.Redis) -> StepRecords:
    return RedisStepRecords(redis_client, retention_ms=60_000)


@pytest.fixture
def key_prefix(services: Services, prefix: str) -> str:
    return prefix


class TestHandlerStoreOnRedis(behaviour.TestHandlerStore):
    """The store's behaviour suite, on Redis (the fixtures above)."""


async def test_stored_records_expire_with_the_retention(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    gateway = FakeGateway()
    records = RedisStepRecords(redis_client, retention_ms=60_000)
    await store_of(gateway, records, prefix).settle([pending(CHARGE), pending(REFUND)])
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}{{gateway}}:*")]
    assert len(keys) == 3  # two replies, one step record
    for key in keys:
        assert 0 < await redis_client.pttl(key) <= 60_000


# -- workers on Kafka ----------------------------------------------------------------


def settings_for(services: Services, prefix: str) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        saga_topic_prefix=prefix,
        saga_key_prefix=prefix,
        saga_partitions=1,
    )


def cmd(saga_id: str, attempt: int | None = 1, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"saga_id": saga_id, "step_name": "charge", "amount": 100, **fields}
    if attempt is not None:
        body["command_id"] = f"{saga_id}:charge:a{attempt}"
        body["attempt"] = attempt
    return body


@asynccontextmanager
async def running(
    settings: Settings, participant: HandlerParticipant, knobs: Knobs | None = None
) -> AsyncIterator[ParticipantWorker]:
    worker = ParticipantWorker(participant, settings, knobs)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.wait_started(), 30)
        yield worker
    finally:
        worker.stop()
        await task


def body(record: Any) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(record.value)
    return value


async def test_a_worker_answers_a_command_delivered_three_times_after_one_call(
    services: Services, prefix: str
) -> None:
    s = settings_for(services, prefix)
    gateway = FakeGateway()
    async with running(s, gateway.participant()), bus(s) as b:
        for _ in range(3):
            await b.send(CHARGE, cmd("s1"))
        await b.wait_for(3, t.STEP_COMPLETED)
        await b.send(CHARGE, cmd("s1", attempt=2))
        replies = await b.wait_for(4, t.STEP_COMPLETED)
    assert gateway.charges == {"s1/charge": 1}
    assert replies[0].value == replies[1].value == replies[2].value
    assert body(replies[0])["result"] == {"receipt": "s1/charge#1", "amount": 100}
    retried = body(replies[3])
    assert (retried["attempt"], retried["command_id"]) == (2, "s1:charge:a2")
    assert retried["result"] == body(replies[0])["result"]


async def test_a_worker_records_refusals_and_retries_errors(
    services: Services, prefix: str
) -> None:
    s = settings_for(services, prefix)
    gateway = FakeGateway()
    gateway.failures["s2/charge"] = [ConnectionResetError("gateway hung up")]
    async with running(s, gateway.participant()), bus(s) as b:
        await b.send(CHARGE, cmd("s1", amount=5_000))
        await b.send(CHARGE, cmd("s2"))
        failed = await b.wait_for(2, t.STEP_FAILED)
        await b.send(CHARGE, cmd("s1", amount=5_000))  # redelivered: from the store
        await b.send(CHARGE, cmd("s2", attempt=2))  # the saga's retry: calls again
        failed = await b.wait_for(3, t.STEP_FAILED)
        completed = await b.wait_for(1, t.STEP_COMPLETED)
    by_saga = {body(r)["saga_id"]: r for r in failed[:2]}
    refused, errored = body(by_saga["s1"]), body(by_saga["s2"])
    assert (refused["error_code"], refused["retryable"]) == ("card_declined", False)
    assert (errored["error_code"], errored["retryable"]) == ("handler_error", True)
    assert failed[2].value == by_saga["s1"].value
    assert body(completed[0])["result"] == {"receipt": "s2/charge#2", "amount": 100}
    assert gateway.charges == {"s1/charge": 1, "s2/charge": 2}


async def test_a_worker_tombstones_an_early_compensation_and_refuses_the_late_action(
    services: Services, prefix: str
) -> None:
    s = settings_for(services, prefix)
    gateway = FakeGateway()
    async with running(s, gateway.participant()), bus(s) as b:
        await b.send(REFUND, cmd("s1", attempt=None))
        compensated = await b.wait_for(1, t.COMPENSATION_COMPLETED)
        await b.send(REFUND, cmd("s1", attempt=None))
        await b.send(CHARGE, cmd("s1"))
        refused = await b.wait_for(1, t.STEP_FAILED)
        compensated = await b.wait_for(2, t.COMPENSATION_COMPLETED)
    assert compensated[0].value == compensated[1].value
    assert "command_id" not in body(compensated[0])  # the minimal contract, answered in kind
    assert (body(refused[0])["error_code"], body(refused[0])["retryable"]) == (
        "already_compensated",
        False,
    )
    assert gateway.refunds == {"s1/charge": 1}
    assert gateway.charges == {}


async def test_a_worker_injecting_business_failures_never_calls_the_handler(
    services: Services, prefix: str
) -> None:
    s = settings_for(services, prefix)
    gateway = FakeGateway()
    async with running(s, gateway.participant(), Knobs(business_failure_rate=1.0)), bus(s) as b:
        await b.send(CHARGE, cmd("s1"))
        await b.send(REFUND, cmd("s2"))
        refused = await b.wait_for(1, t.STEP_FAILED)
        await b.wait_for(1, t.COMPENSATION_COMPLETED)
    assert (body(refused[0])["error_code"], body(refused[0])["retryable"]) == (
        "injected_failure",
        False,
    )
    assert gateway.charges == {}
    assert gateway.refunds == {"s2/charge": 1}  # compensations are never refused


async def test_a_result_too_large_to_reply_with_is_left_out_and_the_worker_goes_on(
    services: Services, prefix: str
) -> None:
    limit = 64 * 1024
    s = settings_for(services, prefix).model_copy(update={"saga_max_message_bytes": limit})

    async def bulky(command: Charge, key: str) -> JsonObject:
        return {"receipt": key, "blob": "x" * command.amount}

    participant = HandlerParticipant(
        name="gateway", routes={CHARGE: Handler(Charge, Kind.ACTION, bulky)}
    )
    async with running(s, participant) as worker, bus(s) as b:
        await b.send(CHARGE, cmd("s-big", amount=100_000))
        await b.send(CHARGE, cmd("s-small", amount=10))
        replies = {body(r)["saga_id"]: body(r) for r in await b.wait_for(2, t.STEP_COMPLETED)}
        assert worker.ready
    # The charge happened: the step completed, only its result is not carried.
    (why,) = replies["s-big"]["result"].values()
    assert list(replies["s-big"]["result"]) == ["result_omitted"]
    assert f"more than the {limit - HEADER_ROOM} a reply may have" in why
    assert replies["s-small"]["result"] == {"receipt": "s-small/charge", "blob": "x" * 10}


# -- a worker killed between the outside call and the store ---------------------------


class RedisGateway:
    """The outside system for a worker in another process: calls counted in Redis."""

    def __init__(self, redis_url: str, prefix: str, *, die_after_call: bool) -> None:
        self._redis = redis_client_for(redis_url)
        self.calls_key = calls_key(prefix)
        self._die = die_after_call

    async def charge(self, command: Charge, key: str) -> JsonObject:
        call = await self._redis.hincrby(self.calls_key, key, 1)
        if self._die:
            os._exit(CRASH_EXIT_CODE)  # after the outside call, before the store
        return {"receipt": f"{key}#{call}"}


def calls_key(prefix: str) -> str:
    return f"{prefix}gateway-calls"


def killable_gateway_app() -> App:
    """The app the subprocess runs (`--app tests.integration.test_handler_participants:...`)."""
    gateway = RedisGateway(
        os.environ["REDIS_URL"],
        os.environ["SAGA_KEY_PREFIX"],
        die_after_call=os.environ.get(DIE_AFTER_CALL) == "1",
    )
    app = App("killable-gateway")
    app.participant(
        HandlerParticipant("gateway", {CHARGE: Handler(Charge, Kind.ACTION, gateway.charge)})
    )
    return app


async def test_a_worker_killed_between_the_call_and_the_store_calls_again_with_the_same_key(
    services: Services, prefix: str, redis_client: aioredis.Redis
) -> None:
    s = settings_for(services, prefix)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SAGA_TOPIC_PREFIX": prefix,
        "SAGA_KEY_PREFIX": prefix,
        "SAGA_PARTITIONS": "1",
        "SAGA_HEALTH_PORT": "0",
    }
    app = f"{__name__}:killable_gateway_app"

    async def start(**extra: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "saga_worker", "participant", "gateway", "--app", app),
            cwd=REPO,
            env={**env, **extra},
        )

    crashed = await start(**{DIE_AFTER_CALL: "1"})
    async with bus(s) as b:
        physical = s.topics.physical(CHARGE)
        await assert_eventually(lambda: b.topic_exists(physical), within=60)
        await b.send(CHARGE, cmd("s1"))
        assert await asyncio.wait_for(crashed.wait(), 60) == CRASH_EXIT_CODE
        assert await redis_client.hgetall(calls_key(prefix)) == {b"s1/charge": b"1"}
        assert await b.all_sent() == []  # the process is gone: it answered nothing

        restarted = await start()  # the batch is replayed: nothing was stored, so it calls
        try:
            replies = await b.wait_for(1, t.STEP_COMPLETED)
        finally:
            restarted.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(restarted.wait(), 60)
    assert code == 0
    assert len(replies) == 1
    assert body(replies[0])["result"] == {"receipt": "s1/charge#2"}
    assert await redis_client.hgetall(calls_key(prefix)) == {b"s1/charge": b"2"}
