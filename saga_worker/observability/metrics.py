"""Prometheus metrics of every worker, defined in one place, all named `saga_worker_*`
(the process collectors' `process_*` and `python_*` aside).

Each worker owns a registry (so several workers in one process, as in tests,
count apart) and serves it on its HealthServer's `/metrics`. Everything is
derived from what a batch already holds: the state a saga was loaded with and
the state that was saved. Nothing here does I/O.

Step durations come from the step's timeout timer: it was set to `sent + timeout`
when the command went out, so the saga state that receives the reply knows when
its command was sent without storing anything more.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from saga_worker._version import __version__
from saga_worker.engine.decide import COMP_TIMEOUT, TIMEOUT, timer_id
from saga_worker.engine.definition import SagaDefinition
from saga_worker.engine.state import SagaState, SagaStatus, StepState, StepStatus
from saga_worker.runtime.dead_letters import DeadLetter

Backlog = Mapping[str, int]  # sagas per status

SAGA_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
STEP_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_RECORDS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

# A step whose status moved to one of these, with the same attempt, had its reply applied.
_ACTION_REPLIED = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED})
_COMPENSATION_REPLIED = frozenset({StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED})


class WorkerMetrics:
    """What every worker counts: batches and dead letters, plus the build and the process."""

    def __init__(self, worker: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker
        self._clock = clock
        self._last_batch = clock()
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Gauge(
            "saga_worker_build_info",
            "Always 1: the saga-worker version and the Python running it",
            ["version", "python"],
            registry=r,
        ).labels(__version__, platform.python_version()).set(1)
        Gauge(
            "saga_worker_seconds_since_last_batch",
            "Seconds since the worker last handled a batch of Kafka records (since it "
            "started, before the first)",
            ["worker"],
            registry=r,
        ).labels(worker).set_function(lambda: self._clock() - self._last_batch)
        self._lag = Gauge(
            "saga_worker_consumer_lag",
            "Records behind the end of the worker's assigned partitions, as its last "
            "fetches saw them",
            ["worker"],
            registry=r,
        ).labels(worker)
        self._batch = Histogram(
            "saga_worker_batch_records",
            "Records per Kafka batch handled",
            ["worker"],
            buckets=BATCH_RECORDS,
            registry=r,
        ).labels(worker)
        self._dead_letters = Counter(
            "saga_worker_dead_letters",
            "Records sent to the dead-letter topic",
            ["worker", "code"],
            registry=r,
        )

    def follow(self, lag: Callable[[], float]) -> None:
        """Where `saga_worker_consumer_lag` comes from: the worker's consumer loop."""
        self._lag.set_function(lag)

    def batch(self, records: int) -> None:
        self._batch.observe(records)
        self._last_batch = self._clock()

    def dead_letters(self, letters: Iterable[DeadLetter]) -> None:
        for letter in letters:
            self._dead_letters.labels(self.worker, letter.code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def render_together(registries: Sequence[CollectorRegistry]) -> bytes:
    """One exposition of several workers sharing a process (`saga-worker all`): each
    family once, with every worker's samples; a sample two registries share (the
    process collectors) is taken from the first."""
    families: dict[str, Metric] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for registry in registries:
        for family in registry.collect():
            merged = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in seen:
                    seen.add(key)
                    merged.samples.append(sample)

    class _Families:
        def collect(self) -> Iterable[Metric]:
            return families.values()

    return generate_latest(_Families())


class OrchestratorMetrics(WorkerMetrics):
    def __init__(self, worker: str = "orchestrator") -> None:
        super().__init__(worker)
        r = self.registry
        by_definition = ["definition"]
        self._started = Counter(
            "saga_worker_sagas_started", "Sagas started", by_definition, registry=r
        )
        self._completed = Counter(
            "saga_worker_sagas_completed", "Sagas completed", by_definition, registry=r
        )
        self._failed = Counter(
            "saga_worker_sagas_failed",
            "Sagas failed (fully compensated)",
            by_definition,
            registry=r,
        )
        self._needs_operator = Counter(
            "saga_worker_sagas_needing_operator",
            "Times a saga gave up retrying and was left for an operator",
            by_definition,
            registry=r,
        )
        self._saga_seconds = Histogram(
            "saga_worker_saga_duration_seconds",
            "Saga creation to completed or failed",
            ["definition", "status"],
            buckets=SAGA_SECONDS,
            registry=r,
        )
        self._step_seconds = Histogram(
            "saga_worker_step_duration_seconds",
            "Command sent to its reply applied, per step and outcome",
            ["definition", "step", "outcome"],
            buckets=STEP_SECONDS,
            registry=r,
        )
        self._step_retries = Counter(
            "saga_worker_step_retries",
            "Step commands sent again after a failure or timeout",
            ["definition", "step"],
            registry=r,
        )
        self._compensation_retries = Counter(
            "saga_worker_compensation_retries",
            "Compensation commands sent again after a failure or timeout",
            ["definition", "step"],
            registry=r,
        )
        self._ignored = Counter(
            "saga_worker_events_ignored",
            "Duplicate, late or stale events that changed nothing",
            registry=r,
        )
        self._repeated_starts = Counter(
            "saga_worker_starts_repeated",
            "Start messages of sagas that had finished and expired, known by their start "
            "marker and ignored, not started again (also in saga_worker_events_ignored_total)",
            by_definition,
            registry=r,
        )
        self._conflicts = Counter(
            "saga_worker_cas_conflicts",
            "Saga writes that lost their compare-and-set and were decided again",
            registry=r,
        )
        self._timers_fired = Counter("saga_worker_timers_fired", "Due timers claimed", registry=r)
        self._timers_deferred = Counter(
            "saga_worker_timers_deferred",
            "Due timers put back un-fired: their saga runs a definition version this "
            "instance does not know (an instance that knows it fires them)",
            ["definition", "version"],
            registry=r,
        )
        self._timers_dropped = Counter(
            "saga_worker_timers_dropped",
            "Due timers dropped because deciding their saga raised (see the error log)",
            registry=r,
        )
        self._outboxes_set_aside = Counter(
            "saga_worker_outboxes_set_aside",
            "Sagas whose stale outbox the sweeper could not read or send (see the error "
            "log); tried again one sweep threshold later",
            registry=r,
        )
        # Redis-wide figures, the same whichever instance measures them: exported only by
        # the instance that measured them last (see `measured`), labelled with its name,
        # so replicas never add them up.
        self._outbox_backlog = Gauge(
            "saga_worker_outbox_backlog",
            "Sagas with outbox entries not yet acknowledged by Kafka, Redis-wide",
            ["measured_by"],
            registry=r,
        )
        self._timer_backlog = Gauge(
            "saga_worker_timer_backlog",
            "Timers scheduled, Redis-wide",
            ["measured_by"],
            registry=r,
        )
        self._sagas = Gauge(
            "saga_worker_sagas",
            "Sagas per status, Redis-wide, from the status index (finished ones leave it "
            "after SAGA_RETENTION_S)",
            ["status", "measured_by"],
            registry=r,
        )

    def measured(self, by: str, outbox_backlog: int, timer_backlog: int, sagas: Backlog) -> None:
        """The Redis-wide figures this instance measured, as `by`."""
        self.not_measuring()
        self._outbox_backlog.labels(by).set(outbox_backlog)
        self._timer_backlog.labels(by).set(timer_backlog)
        for status, count in sagas.items():
            self._sagas.labels(status, by).set(count)

    def not_measuring(self) -> None:
        """Another instance measures the Redis-wide figures: this one exports none."""
        self._outbox_backlog.clear()
        self._timer_backlog.clear()
        self._sagas.clear()

    def ignored(self, count: int) -> None:
        if count:
            self._ignored.inc(count)

    def repeated_starts(self, definitions: Iterable[str]) -> None:
        """Counts repeated starts, given the saga type each one would have started."""
        for name in definitions:
            self._repeated_starts.labels(name).inc()

    def conflicts(self, count: int) -> None:
        if count:
            self._conflicts.inc(count)

    def timers_fired(self, count: int) -> None:
        self._timers_fired.inc(count)

    def timers_deferred(self, definition: str, version: int | None, count: int) -> None:
        self._timers_deferred.labels(definition, str(version)).inc(count)

    def timers_dropped(self, count: int) -> None:
        self._timers_dropped.inc(count)

    def outboxes_set_aside(self, count: int) -> None:
        if count:
            self._outboxes_set_aside.inc(count)

    def saga(self, before: SagaState | None, after: SagaState, definition: SagaDefinition) -> None:
        """Counts what one saved write changed: its status, replies applied, retries."""
        name = after.definition_name
        status = after.status
        previous = before.status if before is not None else None
        if previous is None:
            self._started.labels(name).inc()
        if status is not previous:
            if status is SagaStatus.COMPLETED:
                self._completed.labels(name).inc()
            elif status is SagaStatus.FAILED:
                self._failed.labels(name).inc()
            elif status is SagaStatus.NEEDS_OPERATOR:
                self._needs_operator.labels(name).inc()
            if after.finished:
                seconds = (after.updated_at - after.created_at).total_seconds()
                self._saga_seconds.labels(name, status.value).observe(seconds)
        if before is None or after.steps is before.steps:
            return
        for step, now in after.steps.items():
            was = before.step(step)
            if now is was:
                continue
            self._retries(name, step, was, now)
            sent = _sent_at(step, was, now, before, definition)
            if sent is not None:
                seconds = max((after.updated_at - sent).total_seconds(), 0.0)
                self._step_seconds.labels(name, step, now.status.value).observe(seconds)

    def _retries(self, name: str, step: str, was: StepState, now: StepState) -> None:
        # Attempt 1 is the first send; every attempt above it, newly made, is a retry.
        if now.attempt > max(was.attempt, 1):
            self._step_retries.labels(name, step).inc(now.attempt - max(was.attempt, 1))
        if now.comp_attempt > max(was.comp_attempt, 1):
            retries = now.comp_attempt - max(was.comp_attempt, 1)
            self._compensation_retries.labels(name, step).inc(retries)


def _sent_at(
    step: str, was: StepState, now: StepState, before: SagaState, definition: SagaDefinition
) -> datetime | None:
    """When the command a reply answered was sent, if this change applied a reply."""
    timeout: timedelta
    if (
        was.status is StepStatus.PENDING
        and now.status in _ACTION_REPLIED
        and now.attempt == was.attempt
    ):
        due = before.timers.get(timer_id(TIMEOUT, step, was.attempt))
        known = definition.steps.get(step)
        if due is None or known is None:
            return None
        timeout = known.timeout
    elif (
        was.status is StepStatus.COMPENSATING
        and now.status in _COMPENSATION_REPLIED
        and now.comp_attempt == was.comp_attempt
    ):
        due = before.timers.get(timer_id(COMP_TIMEOUT, step, was.comp_attempt))
        if due is None:
            return None
        timeout = definition.compensation_timeout
    else:
        return None
    return due - timeout


class ParticipantMetrics(WorkerMetrics):
    def __init__(self, worker: str, participant: str) -> None:
        super().__init__(worker)
        self.participant = participant
        self._commands = Counter(
            "saga_worker_participant_commands",
            "Commands answered, by outcome (replayed repeats included)",
            ["participant", "topic", "outcome"],
            registry=self.registry,
        )

    def command(self, topic: str, outcome: str) -> None:
        self._commands.labels(self.participant, topic, outcome).inc()
