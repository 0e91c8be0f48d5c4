"""The participant worker: poll a batch, settle it in Redis, reply, let the loop commit.

Per batch:
1. decode each record with its topic's model; a record that cannot be decoded,
   or is larger than SAGA_MAX_MESSAGE_BYTES, becomes a dead letter (original
   bytes, cut to fit if need be, `dlq.*` headers);
2. turn each command into a verdict: the route's pure `prepare` (a handler
   participant: Apply, call the handler), unless a knob injects a fault;
3. settle the batch through the participant's `Settler`: a script participant's
   in ONE pipelined Redis round trip (participant.effects), each command
   atomically: its effect, its effect record and its stored outcome; a handler
   participant's in two, one to read the stored outcomes and one to store the
   new ones, with the handlers called in between (participant.handler_store);
4. (fault injection: maybe die here, outcomes recorded, nothing replied);
5. send every reply (keyed by saga_id, a well-formed `traceparent` carried over)
   and dead letter; the replies' acknowledgements are the batch's tail;
then the ConsumerLoop commits the batch's offsets once Kafka acknowledged every
reply, while it handles the next batch. A crash before the commit
replays the batch; the stored outcomes answer it again, with no second effect
(for a handler participant: no second call, unless the crash came between the
call and the store, and then with the same idempotency key).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from saga_worker.observability.metrics import ParticipantMetrics
from saga_worker.observability.tracing import configure_tracing
from saga_worker.participant.definition import Participant, Route
from saga_worker.participant.effects import EffectStore, Pending, Settler
from saga_worker.participant.handler_store import HandlerStore, RedisStepRecords
from saga_worker.participant.handlers import Handler, HandlerParticipant
from saga_worker.participant.knobs import CRASH_EXIT_CODE, FaultInjector, Knobs
from saga_worker.participant.protocol import (
    Apply,
    Compensated,
    Completed,
    Fault,
    Kind,
    Outcome,
    Refuse,
    Settled,
    Verdict,
    build_reply,
    reply_body,
)
from saga_worker.runtime.consumer_loop import ConsumerLoop, Record, Tail
from saga_worker.runtime.dead_letters import DeadLetter
from saga_worker.runtime.publisher import Publisher
from saga_worker.runtime.redis_client import RedisClient, is_cluster
from saga_worker.runtime.worker_shell import Clients, WorkerShell
from saga_worker.settings import Settings
from saga_worker.wire import (
    HEADER_ROOM,
    MAX_KEY_BYTES,
    DecodeError,
    SagaCommand,
    decode,
    make_headers,
    traceparent_of,
)
from saga_worker.wire import topics as t

log = logging.getLogger(__name__)


class ParticipantWorker:
    def __init__(
        self,
        participant: Participant | HandlerParticipant,
        settings: Settings,
        knobs: Knobs | None = None,
    ) -> None:
        self.participant = participant
        self._settings = settings
        self._topics = settings.topics
        self._faults = FaultInjector(knobs or Knobs())
        self.worker = f"participant.{participant.name}"
        self._loop: ConsumerLoop | None = None
        self._started = asyncio.Event()
        self.metrics = ParticipantMetrics(self.worker, participant.name)
        self._tracer = configure_tracing(f"saga-worker-{self.worker}")
        self._store: Settler  # set by run()
        self._producer: AIOKafkaProducer  # set by run()
        self._publisher: Publisher  # set by run()
        # Alive as long as run() is: a loop that dies ends run() and takes the server down.
        self._shell = WorkerShell(
            settings,
            worker=self.worker,
            group_id=settings.group_id(self.worker),
            topics=self.topic_names(),
            metrics=self.metrics.render,
        )
        self._stopping = self._shell.stopping
        self.health = self._shell.health

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the current batch, commit it, and return from run()."""
        self._shell.stop()
        if self._loop is not None:
            self._loop.stop()

    async def wait_started(self) -> None:
        """Until the worker has subscribed (tests use it before producing)."""
        await self._started.wait()

    @property
    def ready(self) -> bool:
        """Joined its group and consuming; false again once stopping."""
        return self._shell.ready

    @property
    def group_id(self) -> str:
        return self._shell.group_id

    def topic_names(self) -> list[str]:
        """Physical names of every topic this worker reads or writes."""
        logical = [*self.participant.topics, *t.REPLY_TOPICS, t.DEAD_LETTER]
        return [self._topics.physical(name) for name in logical]

    async def run(self) -> None:
        await self._shell.run(self._run)

    async def _run(self, clients: Clients) -> None:
        s = self._settings
        retention_ms = int(s.retention.total_seconds() * 1000)
        self._store = settler_for(self.participant, clients.redis, s.saga_key_prefix, retention_ms)
        self._producer = clients.producer
        self._publisher = Publisher(
            clients.producer, self._topics, self.worker, s.saga_max_message_bytes
        )
        loop = ConsumerLoop(
            clients.consumer,
            [self._topics.physical(name) for name in self.participant.topics],
            self.handle_batch,
            max_records=s.saga_batch_size,
        )
        self._loop = loop
        self._shell.watch(loop)
        self.metrics.follow(loop.lag)
        await loop.subscribe()
        if self._stopping.is_set():
            loop.stop()
        self._started.set()
        self._shell.mark_ready()
        log.info("participant running", extra={"worker": self.worker, "group": self.group_id})
        await loop.run()

    # -- one batch ---------------------------------------------------------------------

    async def handle_batch(self, records: Sequence[Record]) -> Tail:
        started_ns = time.time_ns()
        self.metrics.batch(len(records))
        latency = self._faults.knobs.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        pending: list[Pending] = []
        dead: list[DeadLetter] = []
        for record in records:
            item = self._intake(record)
            if item is None:
                continue
            if isinstance(item, DeadLetter):
                dead.append(item)
            else:
                pending.append(item)
        # Redis away: EffectStoreUnavailableError is retriable, so the loop retries the batch.
        settled = await self._store.settle(pending)
        self._maybe_crash(settled)
        futures = [await self._send_reply(p, s) for p, s in zip(pending, settled, strict=True)]
        await self._publisher.send_dead_letters(dead)
        self.metrics.dead_letters(dead)
        self._observe(pending, settled, started_ns)
        # The loop commits once Kafka acknowledged every reply, and meanwhile takes the
        # next batch: its effects need not wait for these acknowledgements.
        return asyncio.gather(*futures)

    def _observe(
        self, pending: Sequence[Pending], settled: Sequence[Settled], started_ns: int
    ) -> None:
        """Counts the answered commands and, when a tracer provider is set, traces each."""
        for p, s in zip(pending, settled, strict=True):
            outcome = outcome_label(s.outcome)
            self.metrics.command(p.logical_topic, outcome)
            if self._tracer.enabled:
                attributes = {
                    "saga_id": p.command.saga_id,
                    "step": p.command.step_name,
                    "command_id": p.command.command_id or "",
                    "outcome": outcome,
                }
                name = f"{self.participant.name} {p.logical_topic}"
                self._tracer.span(name, p.traceparent, started_ns, attributes)

    def _intake(self, record: Record) -> Pending | DeadLetter | None:
        logical = self._topics.logical(record.topic)
        route = self.participant.routes.get(logical)
        if route is None:
            return DeadLetter(
                record, "unknown_topic", f"{self.worker} has no handler for {logical}"
            )
        if record.key is not None and len(record.key) > MAX_KEY_BYTES:
            return DeadLetter(record, "key_too_large", f"key of {len(record.key)} bytes")
        try:
            command = decode(
                route.model, record.value, max_bytes=self._settings.saga_max_message_bytes
            )
        except DecodeError as exc:
            return DeadLetter(record, exc.code, exc.reason)
        if route.kind is Kind.ACTION and self._faults.hangs(command.saga_id):
            return None  # fault injection: a hung downstream neither acts nor answers
        verdict = self._verdict(route, command)
        return Pending(command, logical, route.kind, verdict, traceparent_of(record.headers or ()))

    def _verdict(self, route: Route[Any] | Handler[Any], command: SagaCommand) -> Verdict:
        if self._faults.error():
            return Fault("injected_error", "injected unexpected error")
        if route.kind is Kind.ACTION and self._faults.business_failure():
            return Refuse("injected_failure", "injected business failure")
        if isinstance(route, Handler):
            return Apply()  # call the handler, when the store has no answer
        try:
            verdict: Verdict = route.prepare(command)
        except Exception as exc:  # a bug in a handler must not stop the others
            log.exception(
                "prepare failed",
                extra={
                    "saga_id": command.saga_id,
                    "step": command.step_name,
                    "command_id": command.command_id,
                },
            )
            return Fault.from_exception("handler_error", exc)
        return verdict

    def _maybe_crash(self, settled: Sequence[Settled]) -> None:
        for s in settled:
            if s.fresh and self._faults.crash():
                log.warning("fault injection: dying after the effect, before the reply")
                logging.shutdown()
                os._exit(CRASH_EXIT_CODE)

    async def _send_reply(self, pending: Pending, settled: Settled) -> asyncio.Future[Any]:
        command = pending.command
        topic, reply = build_reply(command, pending.logical_topic, settled.outcome)
        body = reply_body(reply, self._settings.saga_max_message_bytes - HEADER_ROOM)
        fut: asyncio.Future[Any] = await self._producer.send(
            self._topics.physical(topic),
            body,
            key=command.saga_id.encode(),
            headers=make_headers(topic, command.saga_id, pending.traceparent),
        )
        return fut


def settler_for(
    participant: Participant | HandlerParticipant,
    redis: RedisClient,
    key_prefix: str,
    retention_ms: int,
) -> Settler:
    """The store that settles this kind of participant's batches."""
    if isinstance(participant, HandlerParticipant):
        records = RedisStepRecords(redis, retention_ms=retention_ms)
        return HandlerStore(participant, records, key_prefix, spread=is_cluster(redis))
    return EffectStore(redis, participant, key_prefix, retention_ms=retention_ms)


def outcome_label(outcome: Outcome) -> str:
    """completed, compensated, failed (a business refusal) or error (retryable)."""
    if isinstance(outcome, Completed):
        return "completed"
    if isinstance(outcome, Compensated):
        return "compensated"
    return "error" if outcome.retryable else "failed"
