"""The batch loop every worker runs: poll, handle, commit; drain on rebalance and stop.

A handler gets one batch of records and returns once what the batch produced is
durable (state in Redis, dead letters acknowledged by Kafka), or returns the rest
of that work as its tail: an awaitable (a participant's replies, until Kafka
acknowledged them). The batch's offsets are committed only once the tail is done,
so a crash replays the batch instead of losing it; meanwhile the next batch is
handled, so a hop never waits for the previous batch's acknowledgements. One tail
and commit run at a time, in batch order. A tail that fails with a transient
error moves every partition back to its committed offset and the batches after
it are not committed: they are handled again, which the effects' idempotence
makes harmless. While a batch is in flight a rebalance waits for it and its tail,
so revoked partitions never have their offsets moved by work that another
instance redoes.
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
Tail = Awaitable[object]  # what a batch still has to finish before its commit
BatchHandler = Callable[[Sequence[Record]], Awaitable[Tail | None]]


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # The batch in hand is finished and its offsets committed before partitions move.
        async with self._loop.in_flight:
            await self._loop.settle_commit()
            self._loop.forget_positions()

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
        self._epoch = 0  # bumped when a failed tail rewinds: older batches commit nothing
        # Per partition, the offset a rewind goes back to: the first one not committed.
        self._replay_from: dict[TopicPartition, int] = {}
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
                epoch = self._epoch
                batch = await self._consumer.getmany(
                    timeout_ms=self._poll_timeout_ms, max_records=self._max_records
                )
                records = [r for part in batch.values() for r in part]
                if not records:
                    continue
                for tp, part in batch.items():
                    self._replay_from.setdefault(tp, part[0].offset)
                async with self.in_flight:
                    handled, tail = await self._handle_until_done(records)
                    if not handled:
                        return  # stopping mid-retry: leave the batch uncommitted for a replay
                    for r in records:
                        self._next[TopicPartition(r.topic, r.partition)] = r.offset + 1
                    # The next batch need not wait for this tail and commit; the one after
                    # it does, so commits stay in order and at most one is in flight.
                    await self.settle_commit()
                    self._committing = asyncio.create_task(self._finish(records, tail, epoch))
        finally:
            await self.settle_commit()

    async def settle_commit(self) -> None:
        """Waits for the commit in flight, if any."""
        if self._committing is not None:
            await self._committing
            self._committing = None

    async def _handle_until_done(self, records: Sequence[Record]) -> tuple[bool, Tail | None]:
        """Retries a batch through transient failures (Redis or Kafka away) until stopped;
        whether it was handled, and its tail."""
        pause = RETRY_PAUSE_S
        self._handling_since = time.monotonic()
        try:
            while True:
                try:
                    return True, await self._handler(records)
                except Exception as exc:
                    if not worth_retrying(exc):
                        raise
                    log.warning("batch failed; retrying", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
                if self._stopping.is_set():
                    return False, None
                pause = min(pause * 2, MAX_RETRY_PAUSE_S)
        finally:
            self._handling_since = None

    async def _finish(self, records: Sequence[Record], tail: Tail | None, epoch: int) -> None:
        if tail is not None:
            try:
                await tail
            except Exception as exc:
                if not worth_retrying(exc):
                    raise
                log.warning("a batch's sends failed; replaying it", extra={"error": repr(exc)})
                await self._rewind()
                return
        if epoch == self._epoch:  # a batch polled before a rewind is handled again
            await self._commit(records)

    async def _rewind(self) -> None:
        self._epoch += 1
        assigned = self._consumer.assignment()
        for tp, offset in self._replay_from.items():
            if tp in assigned:  # a partition that moved restarts from its commit elsewhere
                self._consumer.seek(tp, offset)

    def forget_positions(self) -> None:
        """Partitions were revoked: once assigned again, they start from their commits."""
        self._replay_from.clear()

    async def _commit(self, records: Sequence[Record]) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            if tp not in offsets or offsets[tp].offset <= r.offset:
                offsets[tp] = OffsetAndMetadata(r.offset + 1, "")
        try:
            await self._consumer.commit(offsets)
            self._replay_from.update((tp, meta.offset) for tp, meta in offsets.items())
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved on; their new owner replays from the last commit and
            # the state's version checks make that replay change nothing twice.
            log.warning("commit skipped after a rebalance", extra={"error": str(exc)})
        except KafkaError as exc:
            log.warning("commit failed; the batch will be replayed", extra={"error": str(exc)})
