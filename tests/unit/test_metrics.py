"""Metrics derived from saga writes: counters, durations and retries, with no I/O."""

from __future__ import annotations

import platform
from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition

import saga_worker
from participants.order_fulfillment import ORDER_FULFILLMENT
from saga_worker.engine.decide import RETRY, decide, timer_id
from saga_worker.engine.events import (
    CompensationSucceeded,
    Event,
    StartSaga,
    StepFailed,
    StepSucceeded,
    TimerFired,
)
from saga_worker.engine.state import SagaState
from saga_worker.observability.metrics import (
    OrchestratorMetrics,
    ParticipantMetrics,
    WorkerMetrics,
    render_together,
)
from saga_worker.participant.protocol import Compensated, Completed, Failed
from saga_worker.participant.runtime import outcome_label
from saga_worker.runtime.consumer_loop import ConsumerLoop
from tests.unit.support import ORDER_DATA

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NAME = {"definition": "OrderFulfillment"}


class Walk:
    """Drives one saga through `decide` and feeds every write to the metrics."""

    def __init__(self) -> None:
        self.metrics = OrchestratorMetrics()
        self.state: SagaState | None = None

    def apply(self, event: Event, at_s: float) -> SagaState:
        decision = decide(self.state, event, T0 + timedelta(seconds=at_s), ORDER_FULFILLMENT)
        assert decision.ignored is None
        assert decision.state is not None
        self.metrics.saga(self.state, decision.state, ORDER_FULFILLMENT)
        self.state = decision.state
        return decision.state

    def value(self, name: str, **labels: str) -> float:
        found = self.metrics.registry.get_sample_value(name, labels)
        return found or 0.0


def test_a_saga_that_retries_then_fails_is_counted_with_its_durations() -> None:
    w = Walk()
    w.apply(StartSaga("s1", ORDER_DATA), 0)
    assert w.value("saga_worker_sagas_started_total", **NAME) == 1
    w.apply(StepSucceeded("reserve_inventory"), 0.25)
    reserved = {**NAME, "step": "reserve_inventory"}
    assert w.value("saga_worker_step_duration_seconds_sum", **reserved, outcome="succeeded") == 0.25
    w.apply(StepFailed("process_payment", "busy", retryable=True), 1.0)
    paid = {**NAME, "step": "process_payment"}
    assert w.value("saga_worker_step_duration_seconds_sum", **paid, outcome="failed") == 0.75
    assert w.value("saga_worker_step_retries_total", **paid) == 0
    w.apply(TimerFired(timer_id(RETRY, "process_payment", 1)), 3.0)
    assert w.value("saga_worker_step_retries_total", **paid) == 1
    w.apply(StepFailed("process_payment", "declined", retryable=False), 3.5)
    assert w.value("saga_worker_step_duration_seconds_count", **paid, outcome="failed") == 2
    assert w.value("saga_worker_step_duration_seconds_sum", **paid, outcome="failed") == 1.25
    assert w.value("saga_worker_sagas_failed_total", **NAME) == 0
    w.apply(CompensationSucceeded("reserve_inventory"), 4.0)
    assert (
        w.value("saga_worker_step_duration_seconds_sum", **reserved, outcome="compensated") == 0.5
    )
    assert w.value("saga_worker_sagas_failed_total", **NAME) == 1
    assert w.value("saga_worker_saga_duration_seconds_sum", **NAME, status="failed") == 4.0
    assert w.value("saga_worker_sagas_started_total", **NAME) == 1
    assert w.value("saga_worker_sagas_completed_total", **NAME) == 0


def test_a_completed_saga_is_counted_once_with_its_duration() -> None:
    w = Walk()
    w.apply(StartSaga("s1", ORDER_DATA), 0)
    for n, step in enumerate(ORDER_FULFILLMENT.steps, start=1):
        w.apply(StepSucceeded(step), n)
    assert w.value("saga_worker_sagas_completed_total", **NAME) == 1
    assert w.value("saga_worker_saga_duration_seconds_sum", **NAME, status="completed") == 4.0
    assert w.value("saga_worker_saga_duration_seconds_count", **NAME, status="completed") == 1
    assert w.value("saga_worker_step_retries_total", **NAME, step="reserve_inventory") == 0


def test_a_write_that_changed_no_step_observes_no_step() -> None:
    w = Walk()
    state = w.apply(StartSaga("s1", ORDER_DATA), 0)
    w.metrics.saga(state, state, ORDER_FULFILLMENT)
    assert w.value("saga_worker_sagas_started_total", **NAME) == 1
    reserved = {**NAME, "step": "reserve_inventory", "outcome": "succeeded"}
    assert w.value("saga_worker_step_duration_seconds_count", **reserved) == 0


def test_participant_outcomes_have_stable_labels() -> None:
    metrics = ParticipantMetrics("participant.payment", "payment")
    for outcome in (
        Completed({}),
        Compensated(),
        Failed("declined", "no", retryable=False),
        Failed("boom", "oops", retryable=True),
    ):
        metrics.command("PaymentService.ProcessPayment", outcome_label(outcome))
    labels = {"participant": "payment", "topic": "PaymentService.ProcessPayment"}
    for label in ("completed", "compensated", "failed", "error"):
        found = metrics.registry.get_sample_value(
            "saga_worker_participant_commands_total", {**labels, "outcome": label}
        )
        assert found == 1, label


def test_workers_in_one_process_count_apart() -> None:
    first, second = OrchestratorMetrics(), OrchestratorMetrics()
    first.batch(3)
    labels = {"worker": "orchestrator"}
    assert first.registry.get_sample_value("saga_worker_batch_records_count", labels) == 1
    assert second.registry.get_sample_value("saga_worker_batch_records_count", labels) == 0
    text = first.render().decode()
    assert "# TYPE saga_worker_dead_letters_total counter" in text
    assert "# TYPE saga_worker_batch_records histogram" in text


def test_workers_sharing_a_process_expose_each_family_once_with_every_worker() -> None:
    orchestrator = OrchestratorMetrics()
    payment = ParticipantMetrics("participant.payment", "payment")
    orchestrator.batch(3)
    payment.batch(5)

    text = render_together([orchestrator.registry, payment.registry]).decode()

    assert text.count("# TYPE saga_worker_batch_records histogram") == 1
    assert 'saga_worker_batch_records_count{worker="orchestrator"} 1.0' in text
    assert 'saga_worker_batch_records_count{worker="participant.payment"} 1.0' in text
    lines = text.splitlines()
    assert len([x for x in lines if x.startswith("process_start_time_seconds ")]) == 1


def test_every_worker_says_its_build_and_how_long_since_its_last_batch() -> None:
    now = [100.0]
    metrics = WorkerMetrics("participant.payment", clock=lambda: now[0])
    labels = {"worker": "participant.payment"}
    now[0] = 107.5
    assert metrics.registry.get_sample_value("saga_worker_seconds_since_last_batch", labels) == 7.5
    metrics.batch(3)
    now[0] = 108.0
    assert metrics.registry.get_sample_value("saga_worker_seconds_since_last_batch", labels) == 0.5
    build = {"version": saga_worker.__version__, "python": platform.python_version()}
    assert metrics.registry.get_sample_value("saga_worker_build_info", build) == 1


def test_redis_wide_gauges_are_labelled_by_their_measurer_and_dropped_when_another_measures() -> (
    None
):
    metrics = OrchestratorMetrics()
    metrics.measured("orch-a", 2, 5, {"completed": 7, "pending": 1})
    value = metrics.registry.get_sample_value
    assert value("saga_worker_outbox_backlog", {"measured_by": "orch-a"}) == 2
    assert value("saga_worker_timer_backlog", {"measured_by": "orch-a"}) == 5
    assert value("saga_worker_sagas", {"status": "completed", "measured_by": "orch-a"}) == 7
    metrics.not_measuring()
    text = metrics.render().decode()
    assert "saga_worker_outbox_backlog{" not in text
    assert "saga_worker_sagas{" not in text


def test_every_metric_is_under_one_prefix() -> None:
    names = {
        family.name
        for m in (OrchestratorMetrics(), ParticipantMetrics("participant.p", "p"))
        for family in m.registry.collect()
    }
    ours = {n for n in names if not n.startswith(("process_", "python_"))}
    assert ours
    assert all(n.startswith("saga_worker_") for n in ours), sorted(ours)


def test_consumer_lag_counts_records_behind_the_high_watermarks_of_handled_partitions() -> None:
    handled, fresh, gone = (TopicPartition("t", n) for n in range(3))

    class Consumer:
        def assignment(self) -> set[TopicPartition]:
            return {handled, fresh}

        def highwater(self, tp: TopicPartition) -> int | None:
            return {handled: 40, fresh: 9, gone: 99}[tp]

    async def handle(records: object) -> None:
        return None

    loop = ConsumerLoop(Consumer(), ["t"], handle)
    loop._next.update({handled: 25, gone: 1})  # gone: revoked since, no longer counted
    metrics = WorkerMetrics("orchestrator")
    metrics.follow(loop.lag)
    labels = {"worker": "orchestrator"}
    assert metrics.registry.get_sample_value("saga_worker_consumer_lag", labels) == 15
