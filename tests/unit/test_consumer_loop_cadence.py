"""The batch loop's cadence: the next batch is handled while the previous one's tail
(its sends) is acknowledged, commits wait for their tails and stay in order, and a
failed tail replays everything not committed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from saga_worker.runtime.consumer_loop import ConsumerLoop, Record, Tail
from tests.eventually import assert_eventually

TP = TopicPartition("t", 0)


class _Log:
    """One partition of `size` records, read two at a time from a position a seek moves."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0
        self.commits: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        if self.position >= self.size:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        offsets = range(self.position, min(self.position + 2, self.size))
        self.position = offsets[-1] + 1
        return {TP: [SimpleNamespace(topic="t", partition=0, offset=o) for o in offsets]}

    async def commit(self, offsets: Any) -> None:
        self.commits.append(offsets[TP].offset)

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position = offset


def _loop(log: _Log, handler: Any) -> ConsumerLoop:
    return ConsumerLoop(cast(AIOKafkaConsumer, log), ["t"], handler, poll_timeout_ms=10)


def _offsets(records: Sequence[Record]) -> list[int]:
    return [r.offset for r in records]


async def test_the_next_batch_is_handled_before_the_last_one_is_acknowledged() -> None:
    log = _Log(4)
    handled: list[list[int]] = []
    acks = [asyncio.get_running_loop().create_future() for _ in range(2)]

    async def handler(records: Sequence[Record]) -> Tail:
        handled.append(_offsets(records))
        return acks[len(handled) - 1]

    loop = _loop(log, handler)
    task = asyncio.create_task(loop.run())
    try:
        await assert_eventually(lambda: _ready(handled), lambda h: h == [[0, 1], [2, 3]])
        assert log.commits == []  # neither batch is acknowledged yet
        acks[0].set_result(None)
        await assert_eventually(lambda: _ready(log.commits), lambda c: c == [2])
        acks[1].set_result(None)
        await assert_eventually(lambda: _ready(log.commits), lambda c: c == [2, 4])
    finally:
        loop.stop()
        await asyncio.wait_for(task, 5)


async def test_a_failed_tail_replays_every_batch_not_committed() -> None:
    log = _Log(6)
    handled: list[list[int]] = []
    first_ack = asyncio.get_running_loop().create_future()

    async def handler(records: Sequence[Record]) -> Tail | None:
        handled.append(_offsets(records))
        if len(handled) == 1:
            return _ok()
        return first_ack if len(handled) == 2 else None

    loop = _loop(log, handler)
    task = asyncio.create_task(loop.run())
    try:
        await assert_eventually(lambda: _ready(handled), lambda h: len(h) >= 3)
        first_ack.set_exception(KafkaTimeoutError())  # batch [2, 3]'s replies were lost
        await assert_eventually(lambda: _ready(log.commits), lambda c: c and c[-1] == 6)
    finally:
        loop.stop()
        await asyncio.wait_for(task, 5)
    # [4, 5] was polled before the rewind: handled again, and never committed before
    # the replayed [2, 3] (that would have made 6 follow 2).
    assert handled == [[0, 1], [2, 3], [4, 5], [2, 3], [4, 5]]
    assert log.commits == [2, 4, 6]


async def _ok() -> None:
    return None


async def _ready(value: Any) -> Any:
    return list(value)
