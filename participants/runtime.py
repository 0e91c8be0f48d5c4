"""The participant worker: poll a batch, settle it in Redis, reply, let the loop commit.

Per batch:
1. decode each record with its topic's model; a record that cannot be decoded
   becomes a dead letter (original bytes, `dlq.*` headers);
2. turn each command into a verdict: the route's pure `prepare`, unless a knob
   injects a fault;
3. settle every command in ONE pipelined Redis round trip (participants.effects),
   each command atomically: its effect, its effect record and its stored outcome;
4. (fault injection: maybe die here, effects recorded, nothing replied);
5. send every reply (keyed by saga_id, `traceparent` carried over) and dead letter,
   and wait until Kafka acknowledged all of them;
then the ConsumerLoop commits the batch's offsets. A crash before the commit
replays the batch; the stored outcomes answer it again, with no second effect.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from participants.definition import Participant, Route
from participants.effects import EffectStore, Pending
from participants.knobs import CRASH_EXIT_CODE, FaultInjector, Knobs
from participants.protocol import Fault, Kind, Refuse, Settled, Verdict, build_reply
from saga_worker.consumer_loop import ConsumerLoop, Record
from saga_worker.dead_letters import DeadLetter
from saga_worker.kafka_clients import ensure_topics, make_consumer, make_producer
from saga_worker.publisher import Publisher
from saga_worker.settings import Settings
from schemas import (
    TRACEPARENT,
    DecodeError,
    SagaCommand,
    decode,
    encode,
    header_value,
    make_headers,
)
from schemas import topics as t

log = logging.getLogger(__name__)


class ParticipantWorker:
    def __init__(
        self, participant: Participant, settings: Settings, knobs: Knobs | None = None
    ) -> None:
        self.participant = participant
        self._settings = settings
        self._topics = settings.topics
        self._faults = FaultInjector(knobs or Knobs())
        self.worker = f"participant.{participant.name}"
        self._stopping = asyncio.Event()
        self._loop: ConsumerLoop | None = None
        self._started = asyncio.Event()
        self._store: EffectStore  # set by run()
        self._producer: AIOKafkaProducer  # set by run()
        self._publisher: Publisher  # set by run()

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the current batch, commit it, and return from run()."""
        self._stopping.set()
        if self._loop is not None:
            self._loop.stop()

    async def wait_started(self) -> None:
        """Until the worker has subscribed (tests use it before producing)."""
        await self._started.wait()

    @property
    def group_id(self) -> str:
        return self._settings.group_id(self.worker)

    def topic_names(self) -> list[str]:
        """Physical names of every topic this worker reads or writes."""
        logical = [*self.participant.topics, *t.REPLY_TOPICS, t.DEAD_LETTER]
        return [self._topics.physical(name) for name in logical]

    async def run(self) -> None:
        s = self._settings
        await ensure_topics(s.kafka, self.topic_names(), partitions=s.saga_partitions)
        redis = Redis.from_url(s.redis_url.get_secret_value())
        producer = make_producer(s.kafka)
        consumer = make_consumer(
            s.kafka, group_id=self.group_id, max_poll_records=s.saga_batch_size
        )
        retention_ms = int(s.retention.total_seconds() * 1000)
        self._store = EffectStore(
            redis, self.participant, s.saga_key_prefix, retention_ms=retention_ms
        )
        self._producer = producer
        self._publisher = Publisher(producer, self._topics, self.worker)
        loop = ConsumerLoop(
            consumer,
            [self._topics.physical(name) for name in self.participant.topics],
            self.handle_batch,
            max_records=s.saga_batch_size,
        )
        self._loop = loop
        try:
            await redis.ping()
            await producer.start()
            await consumer.start()
            await loop.subscribe()
            if self._stopping.is_set():
                loop.stop()
            self._started.set()
            log.info("participant running", extra={"worker": self.worker, "group": self.group_id})
            await loop.run()
        finally:
            await consumer.stop()
            await producer.stop()
            await redis.aclose()
            log.info("participant stopped", extra={"worker": self.worker})

    # -- one batch ---------------------------------------------------------------------

    async def handle_batch(self, records: Sequence[Record]) -> None:
        latency = self._faults.knobs.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        pending: list[Pending] = []
        sources: list[Record] = []
        dead: list[DeadLetter] = []
        for record in records:
            item = self._intake(record)
            if isinstance(item, DeadLetter):
                dead.append(item)
            else:
                pending.append(item)
                sources.append(record)
        # Redis away: EffectStoreUnavailableError is retriable, so the loop retries the batch.
        settled = await self._store.settle(pending)
        self._maybe_crash(settled)
        futures = [
            await self._send_reply(p, s, header_value(record.headers or (), TRACEPARENT))
            for p, s, record in zip(pending, settled, sources, strict=True)
        ]
        await self._publisher.send_dead_letters(dead)
        await asyncio.gather(*futures)

    def _intake(self, record: Record) -> Pending | DeadLetter:
        logical = self._topics.logical(record.topic)
        route = self.participant.routes.get(logical)
        if route is None:
            return DeadLetter(
                record, "unknown_topic", f"{self.worker} has no handler for {logical}"
            )
        try:
            command = decode(route.model, record.value)
        except DecodeError as exc:
            return DeadLetter(record, exc.code, exc.reason)
        return Pending(command, logical, route.kind, self._verdict(route, command))

    def _verdict(self, route: Route[Any], command: SagaCommand) -> Verdict:
        if self._faults.error():
            return Fault("injected_error", "injected unexpected error")
        if route.kind is Kind.ACTION and self._faults.business_failure():
            return Refuse("injected_failure", "injected business failure")
        try:
            verdict: Verdict = route.prepare(command)
        except Exception as exc:  # a bug in a handler must not stop the others
            log.exception("prepare failed", extra={"saga_id": command.saga_id})
            return Fault.from_exception("handler_error", exc)
        return verdict

    def _maybe_crash(self, settled: Sequence[Settled]) -> None:
        for s in settled:
            if s.fresh and self._faults.crash():
                log.warning("fault injection: dying after the effect, before the reply")
                logging.shutdown()
                os._exit(CRASH_EXIT_CODE)

    async def _send_reply(
        self, pending: Pending, settled: Settled, traceparent: str | None
    ) -> asyncio.Future[Any]:
        command = pending.command
        topic, reply = build_reply(command, pending.logical_topic, settled.outcome)
        fut: asyncio.Future[Any] = await self._producer.send(
            self._topics.physical(topic),
            encode(reply),
            key=command.saga_id.encode(),
            headers=make_headers(topic, command.saga_id, traceparent),
        )
        return fut
