"""The orchestrator worker: Kafka batches, durable timers and the outbox sweeper.

Per batch: decode and validate (bad records become dead letters), match the events
of wait steps to their sagas (one round trip for the batch's lookups), load every
saga of the batch in one Redis round trip, decide, save every decision in one
pipelined round trip (state, consumed ids and outbox together), publish, clear
the outbox, and only then let the loop commit the offsets. A crash anywhere in
between replays the batch, and the version checks make the replay a no-op for
what was already saved; the sweeper republishes what was saved but not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from saga_worker.app import App
from saga_worker.engine.events import TimerFired
from saga_worker.engine.state import SagaState, SagaStatus
from saga_worker.errors import (
    ConfigurationError,
    StoreUnavailableError,
    UnknownDefinitionError,
)
from saga_worker.observability.metrics import OrchestratorMetrics
from saga_worker.observability.tracing import configure_tracing
from saga_worker.runtime.clock import utcnow
from saga_worker.runtime.consumer_loop import ConsumerLoop, Record
from saga_worker.runtime.correlation import Correlated, Correlator
from saga_worker.runtime.dead_letters import DeadLetter
from saga_worker.runtime.inbound import to_inbound
from saga_worker.runtime.processor import TRACE_DATA_KEY, Applied, Inbound, SagaProcessor
from saga_worker.runtime.publisher import Publisher
from saga_worker.runtime.store import OutboxEntry, RedisSagaStore, SagaWrite
from saga_worker.runtime.transient import worth_retrying
from saga_worker.runtime.worker_shell import Clients, WorkerShell
from saga_worker.settings import Settings

log = logging.getLogger(__name__)

WORKER = "orchestrator"
TIMER_BATCH = 500
RETRY_PAUSE_S = 0.5
# A timer of a saga version this instance does not run goes back for this long, for an
# instance that runs it: long enough not to spin on it, short next to a rolling deploy.
UNKNOWN_VERSION_RETRY = timedelta(seconds=5)

Timer = tuple[str, str]  # (saga_id, timer_id), as the store claims them

# Takes or renews the measurer lease (KEYS[1]) for ARGV[1], for ARGV[2] ms; 1 if held.
_CLAIM_MEASURER = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class Orchestrator:
    def __init__(
        self,
        settings: Settings,
        app: App,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not app.sagas:
            raise ConfigurationError(f"app {app.name!r} declares no saga for the orchestrator")
        app.check_children()
        self._settings = settings
        self._app = app
        self._registry = app.registry
        self._clock = clock
        self._unknown_versions: set[tuple[str, int | None]] = set()  # logged once each
        self._loop: ConsumerLoop | None = None
        self._publishing: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics = OrchestratorMetrics(WORKER)
        # Names this instance on the Redis-wide gauges it exports (see _measure_backlog).
        self.instance = settings.saga_instance_id or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self._tracer = configure_tracing("saga-worker-" + WORKER)
        self._shell = WorkerShell(
            settings,
            worker=WORKER,
            group_id=settings.group_id(WORKER),
            topics=[settings.topics.physical(n) for n in app.orchestrator_topics()],
            metrics=self.metrics.render,
            live=self._live,
        )
        self._stopping = self._shell.stopping
        self.health = self._shell.health

    def stop(self) -> None:
        """Drain the current batch, commit, and return from run()."""
        self._shell.stop()
        if self._loop is not None:
            self._loop.stop()

    @property
    def ready(self) -> bool:
        return self._shell.ready

    async def run(self) -> None:
        await self._shell.run(self._run)

    async def _run(self, clients: Clients) -> None:
        s = self._settings
        topics = s.topics
        self._redis = clients.redis
        store = RedisSagaStore(
            clients.redis,
            s.keys,
            retention=s.retention,
            start_retention=s.start_retention,
            replicas=s.saga_redis_replicas,
            replica_timeout=timedelta(milliseconds=s.saga_redis_replica_timeout_ms),
        )
        self._store = store
        limit = s.saga_max_message_bytes
        self._processor = SagaProcessor(store, self._registry, self._clock, limit)
        self._correlator = Correlator(self._app, s.keys, clients.redis)
        self._publisher = Publisher(clients.producer, topics, WORKER, limit)
        self._loop = ConsumerLoop(
            clients.consumer,
            [topics.physical(n) for n in self._app.orchestrator_inbound()],
            self._handle_batch,
            max_records=s.saga_batch_size,
        )
        self._shell.watch(self._loop)
        self.metrics.follow(self._loop.lag)
        await self._loop.subscribe()
        if self._stopping.is_set():
            self._loop.stop()
        self._shell.mark_ready()
        self._tasks = [
            asyncio.create_task(self._loop.run(), name="consume"),
            asyncio.create_task(
                self._every(s.saga_timer_poll_ms / 1000, self._fire_timers), name="timers"
            ),
            asyncio.create_task(
                self._every(s.saga_outbox_sweep_after_s / 2, self._sweep_outboxes), name="sweeper"
            ),
        ]
        log.info(
            "orchestrator running",
            extra={
                "group": s.group_id(WORKER),
                "sagas": [t.name for t in self._app.sagas],
                "redis_replica_wait": store.replicas.describe(),  # see runtime/replica_wait.py
            },
        )
        try:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a loop that died raises here, after a clean stop below
        finally:
            self.stop()
            await self._tasks[0]  # the consumer loop drains and commits its batch
            await self._settle_publishing()
            for task in self._tasks[1:]:
                task.cancel()
            await asyncio.gather(*self._tasks[1:], return_exceptions=True)

    def _live(self) -> bool:
        return all(not task.done() for task in self._tasks)

    # -- Kafka batches -----------------------------------------------------------------

    async def _handle_batch(self, records: Sequence[Record]) -> None:
        started_ns = time.time_ns()
        self.metrics.batch(len(records))
        inbound: list[Inbound] = []
        dead: list[DeadLetter] = []
        events: list[Correlated] = []
        for record in records:
            item = to_inbound(
                record, self._app, self._settings.topics, self._settings.saga_max_message_bytes
            )
            if isinstance(item, DeadLetter):
                dead.append(item)
            elif isinstance(item, Correlated):
                events.append(item)
            else:
                inbound.append(item)
        if events:
            resolved = await self._correlator.resolve(events)
            inbound += resolved.inbound
            dead += resolved.dead
        applied = await self._apply_isolating_failures(inbound, dead)
        dead += [DeadLetter(r.inbound.source, r.code, r.reason) for r in applied.rejected]
        self._observe(applied, started_ns)
        await self._publisher.send_dead_letters(dead)
        self.metrics.dead_letters(dead)
        self._maybe_crash("after_save")
        # The state and its outbox are durable: the offsets may move on while Kafka
        # acknowledges. One batch's sends are in flight at a time, for backpressure;
        # what a crash leaves unsent the sweeper republishes.
        await self._settle_publishing()
        self._publishing = asyncio.create_task(self._publish_in_background(applied.writes))

    async def _publish_in_background(self, writes: Sequence[SagaWrite]) -> None:
        try:
            await self._publish(writes)
        except Exception as exc:
            if not worth_retrying(exc):
                raise
            log.warning("publish failed; the sweeper will resend", extra={"error": repr(exc)})
        self._maybe_crash("after_publish")

    async def _settle_publishing(self) -> None:
        if self._publishing is not None:
            await self._publishing
            self._publishing = None

    def _maybe_crash(self, point: str) -> None:
        s = self._settings
        if s.saga_crash_point == point and random.random() < s.saga_crash_probability:  # noqa: S311
            log.warning("fault injection: killing the orchestrator", extra={"point": point})
            os.kill(os.getpid(), signal.SIGKILL)

    async def _apply_isolating_failures(
        self, inbound: Sequence[Inbound], dead: list[DeadLetter]
    ) -> Applied:
        """Applies the batch; after a bug, one event at a time, dead-lettering the culprits."""
        try:
            return await self._processor.apply(inbound)
        except Exception as exc:
            if worth_retrying(exc):
                raise
            log.exception("batch failed; isolating the record that breaks it")
        merged = Applied()
        for item in inbound:
            try:
                one = await self._processor.apply([item])
            except Exception as exc:
                if worth_retrying(exc):
                    raise
                # A bug on one record must not stop the others: dead-letter it.
                reason = repr(exc)[:300]
                dead.append(DeadLetter(item.source, "processing_error", reason))
                continue
            merged.merge(one)
        return merged

    async def _publish(self, writes: Sequence[SagaWrite]) -> None:
        await self._publisher.send_entries(e for w in writes for e in w.outbox)
        await self._store.acknowledged(writes)

    # -- timers and the outbox sweeper -------------------------------------------------

    async def _fire_timers(self) -> bool:
        # Due by Redis's clock, not ours: see store.py on timers and clocks.
        claimed = await self._store.claim_due_timers(TIMER_BATCH)
        if not claimed:
            return False
        started_ns = time.time_ns()
        self.metrics.timers_fired(len(claimed))
        applied, deferred = await self._apply_timers(claimed)
        self._observe(applied, started_ns)
        await self._publish(applied.writes)
        done = [timer for timer in claimed if timer not in deferred]  # fired, or dropped
        await self._store.release_timers(done, deferred, retry_after=UNKNOWN_VERSION_RETRY)
        return len(claimed) >= TIMER_BATCH  # one shard at least had more

    async def _apply_timers(self, claimed: Sequence[Timer]) -> tuple[Applied, set[Timer]]:
        """Fires the batch; after a failure, saga by saga, so one saga cannot stop the rest.

        A saga whose definition version this instance does not run (a rolling deploy)
        keeps its timers for an instance that does: they are returned, to be put back
        un-fired. A saga whose decision raises (an engine bug, a corrupt state) loses
        the timer, with an error log and a metric, and is otherwise left as it was: the
        engine alone changes a saga's state (see the README, "The orchestrator").
        """

        def fired(timers: Sequence[Timer]) -> list[Inbound]:
            return [Inbound(saga_id, TimerFired(timer_id)) for saga_id, timer_id in timers]

        try:
            return await self._processor.apply(fired(claimed)), set()
        except Exception as exc:
            if worth_retrying(exc):
                raise
        by_saga: dict[str, list[Timer]] = {}
        for timer in claimed:
            by_saga.setdefault(timer[0], []).append(timer)
        merged = Applied()
        deferred: set[Timer] = set()
        for saga_id, timers in by_saga.items():
            try:
                merged.merge(await self._processor.apply(fired(timers)))
            except UnknownDefinitionError as exc:
                deferred.update(timers)
                self._unknown_version(exc, len(timers))
            except Exception as exc:
                if worth_retrying(exc):
                    raise
                self.metrics.timers_dropped(len(timers))
                log.exception(
                    "deciding a saga's timer raised; the timer is dropped",
                    extra={"saga_id": saga_id, "timers": [t for _, t in timers]},
                )
        return merged, deferred

    def _unknown_version(self, exc: UnknownDefinitionError, timers: int) -> None:
        self.metrics.timers_deferred(exc.name, exc.version, timers)
        if (exc.name, exc.version) not in self._unknown_versions:
            self._unknown_versions.add((exc.name, exc.version))
            log.warning(
                "timers of a saga version this instance does not run are left to one that does",
                extra={
                    "saga_type": exc.name,
                    "version": exc.version,
                    "known_versions": list(exc.known),
                    "retry_after_s": UNKNOWN_VERSION_RETRY.total_seconds(),
                },
            )

    async def _sweep_outboxes(self) -> bool:
        threshold = timedelta(seconds=self._settings.saga_outbox_sweep_after_s)
        stale = await self._store.stale_outboxes(self._clock() - threshold, TIMER_BATCH)
        failed = dict(stale.unreadable)
        sent = await self._republish_isolating_failures(stale.entries, failed)
        await self._store.clear_outboxes(
            {saga_id: [e.message_id for e in entries] for saga_id, entries in sent.items()}
        )
        if sent:
            log.info("outbox sweeper republished", extra={"sagas": len(sent)})
        if failed:
            # Set aside, not dropped: each comes back one threshold later, and meanwhile
            # stops holding a place at the head of the pending-outbox index.
            self.metrics.outboxes_set_aside(len(failed))
            for saga_id, reason in failed.items():
                log.error(
                    "outbox could not be republished; trying again later",
                    extra={"saga_id": saga_id, "reason": reason},
                )
            await self._store.defer_outboxes(failed, self._clock())
        await self._store.forget_expired(self._clock() - self._settings.retention)
        await self._measure_backlog()
        return len(stale) == TIMER_BATCH

    async def _republish_isolating_failures(
        self, stale: Mapping[str, list[OutboxEntry]], failed: dict[str, str]
    ) -> dict[str, list[OutboxEntry]]:
        """Sends every saga's entries; after a failure, saga by saga, noting the culprits."""
        try:
            await self._publisher.send_entries(e for entries in stale.values() for e in entries)
            return dict(stale)
        except Exception as exc:
            if worth_retrying(exc):
                raise
        sent: dict[str, list[OutboxEntry]] = {}
        for saga_id, entries in stale.items():
            try:
                await self._publisher.send_entries(entries)
            except Exception as exc:
                if worth_retrying(exc):
                    raise
                failed[saga_id] = repr(exc)[:300]
                continue
            sent[saga_id] = entries
        return sent

    async def _measure_backlog(self) -> None:
        """The Redis-wide gauges, measured and exported by one instance at a time: the one
        holding the measurer lease, which lapses three sweeps after its holder stops."""
        keys = self._settings.keys
        lease_ms = int(self._settings.saga_outbox_sweep_after_s * 1500)
        try:
            if not await self._redis.eval(
                _CLAIM_MEASURER, 1, keys.measurer, self.instance, lease_ms
            ):
                self.metrics.not_measuring()
                return
        except RedisError as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc
        statuses = [status.value for status in SagaStatus]
        outboxes, timers, counts = await self._store.index_sizes(statuses)
        sagas = dict(zip(statuses, counts, strict=True))
        self.metrics.measured(self.instance, outboxes, timers, sagas)

    async def _every(
        self, interval_s: float, work: Callable[[], Coroutine[Any, Any, bool]]
    ) -> None:
        """Runs `work` until stopped: again at once while it reports more to do."""
        while not self._stopping.is_set():
            try:
                more = await work()
            except Exception as exc:
                if not worth_retrying(exc):
                    raise
                log.warning("background work failed; retrying", extra={"error": repr(exc)})
                more = False
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), interval_s)

    # -- metrics and logs of saved decisions --------------------------------------------

    def _observe(self, applied: Applied, started_ns: int) -> None:
        self.metrics.ignored(applied.ignored)
        self.metrics.repeated_starts(i.start.name for i in applied.repeated_starts if i.start)
        self.metrics.conflicts(applied.conflicts)
        for write in applied.writes:
            state = write.state
            definition = self._registry.get(state.definition_name, state.definition_version)
            self.metrics.saga(applied.before.get(write.saga_id), state, definition)
            if state.status.value != write.previous_status:
                self._log_transition(state)
            if self._tracer.enabled:
                trace = state.data.get(TRACE_DATA_KEY)
                attributes = {k: v for k, v in self._context(state).items() if v is not None}
                attributes["previous_status"] = write.previous_status or ""
                self._tracer.span(
                    f"saga {state.definition_name}",
                    trace if isinstance(trace, str) else None,
                    started_ns,
                    attributes,
                )

    def _log_transition(self, state: SagaState) -> None:
        """Terminal transitions at DEBUG (thousands a second under load); an operator's at
        WARNING."""
        if state.status is SagaStatus.NEEDS_OPERATOR:
            log.warning(
                "saga needs an operator",
                extra={**self._context(state), "reason": state.operator_reason},
            )
        elif state.finished and log.isEnabledFor(logging.DEBUG):
            log.debug("saga finished", extra={**self._context(state), "error": state.error})

    def _context(self, state: SagaState) -> dict[str, Any]:
        return {
            "saga_id": state.saga_id,
            "saga_type": state.definition_name,
            "business_key": self._app.business_key(state),
            "status": state.status.value,
        }
