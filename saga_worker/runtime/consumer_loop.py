"""The batch loop every worker runs: poll, handle, commit; drain on rebalance and stop.

A handler gets one batch of records and returns once everything the batch
produced is durable (state in Redis, dead letters acknowledged by Kafka). Only
then are the batch's offsets committed, so a crash replays the batch instead of
losing it. While a batch is in flight a rebalance waits for it, so revoked
partitions never have their offsets moved by work that another instance redoes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from saga_worker.runtime.transient import worth_retrying

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.2
TOPICS_VISIBLE_WITHIN_S = 30.0
MAX_RETRY_PAUSE_S = 5.0

Record: TypeAlias = ConsumerRecord[bytes | None, bytes | None]
BatchHandler = Callable[[Sequence[Record]], Awaitable[None]]


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # The batch in hand is finished and its offsets committed before partitions move.
        async with self._loop.in_flight:
            await self._loop.settle_commit()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(str(tp) for tp in assigned)})


class ConsumerLoop:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: Sequence[str],
        handler: BatchHandler,
        *,
        poll_timeout_ms: int = 200,
        max_records: int = 500,
    ) -> None:
        self._consumer = consumer
        self._topics = list(topics)
        self._handler = handler
        self._poll_timeout_ms = poll_timeout_ms
        self._max_records = max_records
        self.in_flight = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._committing: asyncio.Task[None] | None = None
        self._handling_since: float | None = None  # time.monotonic() the batch came in
        self._next: dict[TopicPartition, int] = {}  # offset after the last record handled

    def stalled_for(self) -> float:
        """Seconds the batch in hand has been handled (retrying or hanging); 0 if none."""
        since = self._handling_since
        return 0.0 if since is None else time.monotonic() - since

    async def subscribe(self) -> None:
        """Subscribes once the consumer's metadata lists every topic.

        Subscribing to topics created a moment ago, before they show up in the
        consumer's metadata, gets them no partitions until the next metadata
        refresh, minutes later.
        """
        deadline = asyncio.get_running_loop().time() + TOPICS_VISIBLE_WITHIN_S
        missing = set(self._topics) - set(await self._consumer.topics())
        while missing and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            missing = set(self._topics) - set(await self._consumer.topics())
        if missing:
            log.warning("topics still missing from metadata", extra={"topics": sorted(missing)})
        self._consumer.subscribe(self._topics, listener=_DrainOnRevoke(self))

    def stop(self) -> None:
        """Finish the current batch, commit it, and return from run()."""
        self._stopping.set()

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment())

    def lag(self) -> int:
        """Records behind the high watermarks the last fetches saw, over the partitions
        assigned and handled since (a metric; no broker round trip)."""
        behind = 0
        for tp in self._consumer.assignment():
            end, handled = self._consumer.highwater(tp), self._next.get(tp)
            if end is not None and handled is not None:
                behind += max(end - handled, 0)
        return behind

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                batch = await self._consumer.getmany(
                    timeout_ms=self._poll_timeout_ms, max_records=self._max_records
                )
                records = [r for part in batch.values() for r in part]
                if not records:
                    continue
                async with self.in_flight:
                    if not await self._handle_until_done(records):
                        return  # stopping mid-retry: leave the batch uncommitted for a replay
                    for r in records:
                        self._next[TopicPartition(r.topic, r.partition)] = r.offset + 1
                    # The next batch need not wait for this commit; the one after it does,
                    # so commits stay in order and at most one is in flight.
                    await self.settle_commit()
                    self._committing = asyncio.create_task(self._commit(records))
        finally:
            await self.settle_commit()

    async def settle_commit(self) -> None:
        """Waits for the commit in flight, if any."""
        if self._committing is not None:
            await self._committing
            self._committing = None

    async def _handle_until_done(self, records: Sequence[Record]) -> bool:
        """Retries a batch through transient failures (Redis or Kafka away) until stopped."""
        pause = RETRY_PAUSE_S
        self._handling_since = time.monotonic()
        try:
            while True:
                try:
                    await self._handler(records)
                    return True
                except Exception as exc:
                    if not worth_retrying(exc):
                        raise
                    log.warning("batch failed; retrying", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
                if self._stopping.is_set():
                    return False
                pause = min(pause * 2, MAX_RETRY_PAUSE_S)
        finally:
            self._handling_since = None

    async def _commit(self, records: Sequence[Record]) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            if tp not in offsets or offsets[tp].offset <= r.offset:
                offsets[tp] = OffsetAndMetadata(r.offset + 1, "")
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved on; their new owner replays from the last commit and
            # the state's version checks make that replay change nothing twice.
            log.warning("commit skipped after a rebalance", extra={"error": str(exc)})
        except KafkaError as exc:
            log.warning("commit failed; the batch will be replayed", extra={"error": str(exc)})
