"""Errors classified by what they are: what the runtime retries, and liveness that
notices a consumer loop that stopped making progress."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from saga_worker.errors import (
    ConfigurationError,
    EffectStoreUnavailableError,
    StoreUnavailableError,
    is_transient,
)
from saga_worker.participant.effects import settled_from_script
from saga_worker.runtime.consumer_loop import ConsumerLoop, Record
from saga_worker.runtime.transient import worth_retrying
from saga_worker.runtime.worker_shell import WorkerShell
from saga_worker.settings import load_settings
from tests.eventually import assert_eventually


@pytest.mark.parametrize(
    "exc",
    [
        KafkaTimeoutError(),
        KafkaConnectionError(),
        RedisConnectionError("refused"),
        RedisTimeoutError("Timeout reading from socket"),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ResponseError("BUSY Redis is busy running a script."),
        ResponseError("MASTERDOWN Link with MASTER is down"),
        StoreUnavailableError("redis"),
        EffectStoreUnavailableError("redis"),
        TimeoutError(),
    ],
    ids=repr,
)
def test_the_retry_predicate_accepts_what_passes(exc: Exception) -> None:
    assert worth_retrying(exc)


@pytest.mark.parametrize(
    "exc",
    [
        TypeError("unsupported operand"),
        KeyError("saga_id"),
        ConfigurationError("bad setting"),
        ResponseError("ERR Error running script: attempt to index a nil value"),
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    ],
    ids=repr,
)
def test_the_retry_predicate_refuses_what_would_fail_again(exc: Exception) -> None:
    assert not worth_retrying(exc)


def test_kafka_timeouts_are_why_the_runtime_needs_more_than_is_transient() -> None:
    assert not is_transient(KafkaTimeoutError())  # aiokafka marks it not retriable


@pytest.mark.parametrize(
    "raw",
    [
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'.", "OOM"),
        ReadOnlyError("You can't write against a read only replica.", "READONLY"),
        ResponseError("LOADING Redis is loading the dataset in memory"),
        ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
        ResponseError("CLUSTERDOWN The cluster is down"),
    ],
    ids=repr,
)
def test_a_redis_that_refuses_for_now_retries_the_batch_instead_of_failing_the_step(
    raw: Exception,
) -> None:
    with pytest.raises(EffectStoreUnavailableError):
        settled_from_script(raw)


def test_a_script_that_raised_is_still_answered_as_a_retryable_failure() -> None:
    settled = settled_from_script(ResponseError("ERR user_script:3: boom"))
    assert getattr(settled.outcome, "retryable", None) is True


# -- liveness follows the consumer loop's progress --------------------------------------


class _OneBatchConsumer:
    """Hands out one batch, then nothing."""

    def __init__(self) -> None:
        self.given = False

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        if self.given:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        self.given = True
        return {("t", 0): [SimpleNamespace(topic="t", partition=0, offset=0)]}

    async def commit(self, offsets: Any) -> None:
        return None


async def _hangs(records: Sequence[Record]) -> None:
    await asyncio.Event().wait()


async def _keeps_timing_out(records: Sequence[Record]) -> None:
    raise KafkaTimeoutError()


async def _status(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(line.split()[1])


@pytest.mark.parametrize("handler", [_hangs, _keeps_timing_out], ids=["hangs", "retries"])
async def test_liveness_fails_when_one_batch_is_in_hand_past_the_stall_setting(
    handler: Any,
) -> None:
    settings = load_settings(saga_stall_after_s=0.5, saga_health_port=0)
    shell = WorkerShell(settings, worker="w", group_id="g", topics=[], metrics=lambda: b"")
    consumer = cast(AIOKafkaConsumer, _OneBatchConsumer())
    loop = ConsumerLoop(consumer, ["t"], handler, poll_timeout_ms=10)
    shell.watch(loop)
    await shell.health.start()
    task = asyncio.create_task(loop.run())
    try:
        assert await _status(shell.health.port) == 200  # a batch in hand, not for long yet
        await assert_eventually(
            lambda: _status(shell.health.port), lambda code: code == 503, within=5
        )
        assert not task.done()  # a transient failure is retried, never ends the loop
    finally:
        loop.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await shell.health.stop()


async def test_liveness_stays_up_while_batches_complete() -> None:
    settings = load_settings(saga_stall_after_s=0.2, saga_health_port=0)
    shell = WorkerShell(settings, worker="w", group_id="g", topics=[], metrics=lambda: b"")
    handled = asyncio.Event()

    async def quick(records: Sequence[Record]) -> None:
        handled.set()

    loop = ConsumerLoop(cast(AIOKafkaConsumer, _OneBatchConsumer()), ["t"], quick)
    shell.watch(loop)
    await shell.health.start()
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(handled.wait(), 5)
        await asyncio.sleep(0.4)
        assert await _status(shell.health.port) == 200
    finally:
        loop.stop()
        await asyncio.wait_for(task, 5)
        await shell.health.stop()
