"""Handler participants' store without Redis: once per step toward the outside system.

`TestHandlerStore` takes its records from the `records` fixture: here the
in-memory ones; tests/integration/test_handler_participants.py runs the same class
against the real Redis (RedisStepRecords and its Lua script).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from saga_worker.errors import EffectStoreUnavailableError
from saga_worker.participant.definition import Participant
from saga_worker.participant.effects import EffectStore, Pending
from saga_worker.participant.handler_store import (
    HandlerStore,
    MemoryStepRecords,
    StepRecords,
    Write,
)
from saga_worker.participant.handlers import Handler, HandlerParticipant, StepRefused
from saga_worker.participant.protocol import (
    Apply,
    Compensated,
    Completed,
    Failed,
    Fault,
    JsonObject,
    Kind,
    Refuse,
    Settled,
    Verdict,
    build_reply,
)
from saga_worker.participant.runtime import settler_for
from saga_worker.wire import CompensationCommand, SagaCommand, encode

CHARGE = "Gateway.Charge"
REFUND = "Gateway.Refund"


class Charge(SagaCommand):
    amount: int


class FakeGateway:
    """The outside system: records every call by idempotency key; not idempotent itself,
    so each call's receipt says which call it was."""

    def __init__(self) -> None:
        self.charges: Counter[str] = Counter()
        self.refunds: Counter[str] = Counter()
        self.failures: dict[str, list[Exception]] = {}  # by key, raised by the next charges

    async def charge(self, command: Charge, key: str) -> JsonObject:
        self.charges[key] += 1  # the outside system saw it, whatever happens next
        if self.failures.get(key):
            raise self.failures[key].pop(0)
        if command.amount > 1_000:
            raise StepRefused("card_declined", f"{command.amount} is over the card's limit")
        return {"receipt": f"{key}#{self.charges[key]}", "amount": command.amount}

    async def refund(self, command: CompensationCommand, key: str) -> None:
        self.refunds[key] += 1

    def participant(self) -> HandlerParticipant:
        return HandlerParticipant(
            name="gateway",
            routes={
                CHARGE: Handler(Charge, Kind.ACTION, self.charge),
                REFUND: Handler(CompensationCommand, Kind.COMPENSATION, self.refund),
            },
        )


def pending(
    topic: str,
    saga_id: str = "s1",
    attempt: int | None = 1,
    verdict: Verdict | None = None,
    **fields: Any,
) -> Pending:
    """A command of the step `charge` (or its compensation), as the orchestrator sends it."""
    body: dict[str, Any] = {"saga_id": saga_id, "step_name": "charge", "amount": 100, **fields}
    if attempt is not None:
        body["command_id"] = f"{saga_id}:{topic}:{attempt}"
        body["attempt"] = attempt
    if topic == CHARGE:
        return Pending(Charge.model_validate(body), topic, Kind.ACTION, verdict or Apply())
    command = CompensationCommand.model_validate(body)
    return Pending(command, topic, Kind.COMPENSATION, verdict or Apply())


def reply_bytes(p: Pending, s: Settled) -> bytes:
    return encode(build_reply(p.command, p.logical_topic, s.outcome)[1])


@pytest.fixture
def records() -> StepRecords:
    return MemoryStepRecords()


@pytest.fixture
def key_prefix() -> str:
    return "unit."


def store_of(gateway: FakeGateway, records: StepRecords, key_prefix: str) -> HandlerStore:
    return HandlerStore(gateway.participant(), records, key_prefix)


class FailingWrites:
    """Redis goes away after the handlers ran: the first `failures` writes fail."""

    def __init__(self, inner: StepRecords, failures: int = 1) -> None:
        self._inner = inner
        self._failures = failures

    async def read(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._inner.read(keys)

    async def write(self, writes: Sequence[Write]) -> list[Settled]:
        if self._failures:
            self._failures -= 1
            raise EffectStoreUnavailableError("redis: connection lost")
        return await self._inner.write(writes)


class RivalFirst:
    """Another worker settles something between this store's read and its write."""

    def __init__(self, inner: StepRecords, rival: Callable[[], Awaitable[object]]) -> None:
        self._inner = inner
        self._rival = rival

    async def read(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._inner.read(keys)

    async def write(self, writes: Sequence[Write]) -> list[Settled]:
        await self._rival()
        return await self._inner.write(writes)


def _a_list() -> Any:
    return ["not", "a", "dict"]


def _not_json() -> Any:
    return {"when": object()}


def _refused_without_a_code() -> Any:
    raise StepRefused("", "no code")


class TestHandlerStore:
    """The behaviour suite; tests/integration/test_handler_participants.py runs it on Redis."""

    async def test_a_command_delivered_three_times_calls_once_and_answers_identically(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        store = store_of(gateway, records, key_prefix)
        same = pending(CHARGE)
        in_one_batch = await store.settle([same, same])
        in_another = await store.settle([same])
        settled = [*in_one_batch, *in_another]
        assert gateway.charges == {"s1/charge": 1}
        assert [s.fresh for s in settled] == [True, False, False]
        assert settled[0].outcome == Completed({"receipt": "s1/charge#1", "amount": 100})
        assert len({reply_bytes(same, s) for s in settled}) == 1

    async def test_a_new_attempt_of_a_succeeded_step_gets_its_result_without_a_call(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        store = store_of(gateway, records, key_prefix)
        [first] = await store.settle([pending(CHARGE, attempt=1)])
        [second] = await store.settle([pending(CHARGE, attempt=2, amount=999)])
        assert gateway.charges == {"s1/charge": 1}
        assert (
            second.outcome == first.outcome == Completed({"receipt": "s1/charge#1", "amount": 100})
        )
        assert second.fresh  # its own reply is stored now, under its own command id

    async def test_a_refusal_is_answered_not_retryable_and_recorded(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        store = store_of(gateway, records, key_prefix)
        big = pending(CHARGE, amount=5_000)
        refused, in_batch = await store.settle([big, big])
        [again] = await store.settle([big])
        assert refused.outcome == Failed("card_declined", "5000 is over the card's limit", False)
        assert (refused.fresh, in_batch.fresh, again.fresh) == (True, False, False)
        assert again.outcome == in_batch.outcome == refused.outcome
        assert gateway.charges == {"s1/charge": 1}

    async def test_an_exception_is_answered_retryable_and_the_next_attempt_calls_again(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        gateway.failures["s1/charge"] = [ConnectionResetError("gateway hung up")]
        store = store_of(gateway, records, key_prefix)
        [failed] = await store.settle([pending(CHARGE, attempt=1)])
        assert isinstance(failed.outcome, Failed)
        assert (failed.outcome.code, failed.outcome.retryable, failed.fresh) == (
            "handler_error",
            True,
            False,
        )
        assert "gateway hung up" in failed.outcome.error
        [done] = await store.settle([pending(CHARGE, attempt=2)])
        assert done.outcome == Completed({"receipt": "s1/charge#2", "amount": 100})
        assert gateway.charges == {"s1/charge": 2}

    async def test_a_redelivered_command_after_an_exception_calls_again(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        gateway.failures["s1/charge"] = [TimeoutError()]
        store = store_of(gateway, records, key_prefix)
        same = pending(CHARGE)
        [failed] = await store.settle([same])
        [done] = await store.settle([same])
        assert isinstance(failed.outcome, Failed)
        assert failed.outcome.retryable
        assert isinstance(done.outcome, Completed)
        assert gateway.charges == {"s1/charge": 2}

    async def test_a_compensation_before_its_action_leaves_a_tombstone_that_refuses_it(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        store = store_of(gateway, records, key_prefix)
        refund = pending(REFUND)
        early = await store.settle([refund, refund])
        [repeated] = await store.settle([refund])
        [late] = await store.settle([pending(CHARGE)])
        [late_again] = await store.settle([pending(CHARGE, attempt=2)])
        assert [s.outcome for s in (*early, repeated)] == [Compensated()] * 3
        assert gateway.refunds == {"s1/charge": 1}  # still called: the gateway may know the key
        assert late.outcome == late_again.outcome
        assert isinstance(late.outcome, Failed)
        assert (late.outcome.code, late.outcome.retryable) == ("already_compensated", False)
        assert gateway.charges == {}

    async def test_an_action_after_its_compensation_in_the_same_batch_is_refused(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        refunded, late = await store_of(gateway, records, key_prefix).settle(
            [pending(REFUND), pending(CHARGE)]
        )
        assert refunded.outcome == Compensated()
        assert isinstance(late.outcome, Failed)
        assert late.outcome.code == "already_compensated"
        assert gateway.charges == {}

    async def test_a_compensation_after_the_action_calls_its_handler_once_per_step(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        store = store_of(gateway, records, key_prefix)
        await store.settle([pending(CHARGE)])
        first = await store.settle([pending(REFUND, attempt=1), pending(REFUND, attempt=1)])
        [retried] = await store.settle([pending(REFUND, attempt=2)])
        [late_action] = await store.settle([pending(CHARGE, attempt=2)])
        assert [s.outcome for s in (*first, retried)] == [Compensated()] * 3
        assert gateway.refunds == {"s1/charge": 1}
        assert isinstance(late_action.outcome, Failed)
        assert late_action.outcome.code == "already_compensated"
        assert gateway.charges == {"s1/charge": 1}

    async def test_a_store_failure_after_the_call_calls_again_with_the_same_key(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        flaky = HandlerStore(gateway.participant(), FailingWrites(records), key_prefix)
        same = pending(CHARGE)
        with pytest.raises(EffectStoreUnavailableError):
            await flaky.settle([same])
        [done] = await flaky.settle([same])  # the loop retries the batch
        assert gateway.charges == {"s1/charge": 2}
        assert done.outcome == Completed({"receipt": "s1/charge#2", "amount": 100})
        [again] = await store_of(gateway, records, key_prefix).settle([same])
        assert again.outcome == done.outcome
        assert gateway.charges == {"s1/charge": 2}

    async def test_an_outcome_stored_by_a_rival_meanwhile_is_the_answer(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        same = pending(CHARGE)
        rival = store_of(gateway, records, key_prefix)
        mine = HandlerStore(
            gateway.participant(), RivalFirst(records, lambda: rival.settle([same])), key_prefix
        )
        [answer] = await mine.settle([same])
        assert gateway.charges == {"s1/charge": 2}  # both called; the first stored wins
        assert answer == Settled(Completed({"receipt": "s1/charge#2", "amount": 100}), fresh=False)

    async def test_an_action_whose_step_was_compensated_while_it_ran_is_refused(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        rival = store_of(gateway, records, key_prefix)
        mine = HandlerStore(
            gateway.participant(),
            RivalFirst(records, lambda: rival.settle([pending(REFUND)])),
            key_prefix,
        )
        [answer] = await mine.settle([pending(CHARGE)])
        assert isinstance(answer.outcome, Failed)
        assert (answer.outcome.code, answer.outcome.retryable) == ("already_compensated", False)
        [again] = await rival.settle([pending(CHARGE)])
        assert again.outcome == answer.outcome

    async def test_injected_faults_and_refusals_never_call_the_handler(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        store = store_of(gateway, records, key_prefix)
        fault = Fault("injected_error", "injected unexpected error")
        refusal = Refuse("injected_failure", "injected business failure")
        [faulted] = await store.settle([pending(CHARGE, "s1", verdict=fault)])
        [refused] = await store.settle([pending(CHARGE, "s2", verdict=refusal)])
        [refused_again] = await store.settle([pending(CHARGE, "s2")])
        assert faulted == Settled(
            Failed("injected_error", "injected unexpected error", True), False
        )
        assert refused.outcome == Failed("injected_failure", "injected business failure", False)
        assert refused_again.outcome == refused.outcome
        assert gateway.charges == {}
        [done] = await store.settle([pending(CHARGE, "s1")])  # the fault was not stored
        [stored] = await store.settle([pending(CHARGE, "s1", verdict=fault)])
        assert isinstance(done.outcome, Completed)
        assert stored == Settled(done.outcome, fresh=False)  # a stored answer beats a fault
        assert gateway.charges == {"s1/charge": 1}

    async def test_sagas_run_concurrently_and_one_sagas_commands_in_batch_order(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        calls: list[str] = []
        other_saga_ran = asyncio.Event()

        async def charge(command: Charge, key: str) -> JsonObject:
            calls.append(f"charge {key}")
            if command.saga_id == "s1":  # returns only if s2 runs while s1 waits
                await asyncio.wait_for(other_saga_ran.wait(), 5)
            other_saga_ran.set()
            return {}

        async def refund(command: CompensationCommand, key: str) -> None:
            calls.append(f"refund {key}")

        participant = HandlerParticipant(
            "gateway",
            {
                CHARGE: Handler(Charge, Kind.ACTION, charge),
                REFUND: Handler(CompensationCommand, Kind.COMPENSATION, refund),
            },
        )
        settled = await HandlerStore(participant, records, key_prefix).settle(
            [pending(CHARGE, "s1"), pending(REFUND, "s1"), pending(CHARGE, "s2")]
        )
        assert [s.outcome for s in settled] == [Completed({}), Compensated(), Completed({})]
        assert calls == ["charge s1/charge", "charge s2/charge", "refund s1/charge"]

    @pytest.mark.parametrize("misbehaviour", [_a_list, _not_json, _refused_without_a_code])
    async def test_a_handler_answering_what_no_reply_can_carry_is_retried_not_stored(
        self, records: StepRecords, key_prefix: str, misbehaviour: Callable[[], Any]
    ) -> None:
        calls: Counter[str] = Counter()

        async def charge(command: Charge, key: str) -> Any:
            calls[key] += 1
            return misbehaviour()

        participant = HandlerParticipant("gateway", {CHARGE: Handler(Charge, Kind.ACTION, charge)})
        store = HandlerStore(participant, records, key_prefix)
        same = pending(CHARGE)
        first, second = [*(await store.settle([same])), *(await store.settle([same]))]
        assert isinstance(first.outcome, Failed)
        assert (first.outcome.code, first.outcome.retryable, first.fresh) == (
            "handler_error",
            True,
            False,
        )
        assert second == first
        assert calls == {"s1/charge": 2}

    async def test_minimal_commands_are_answered_from_the_store_by_saga_step_and_topic(
        self, records: StepRecords, key_prefix: str
    ) -> None:
        gateway = FakeGateway()
        store = store_of(gateway, records, key_prefix)
        minimal = pending(CHARGE, attempt=None)
        assert minimal.command.command_id is None
        [first] = await store.settle([minimal])
        [again] = await store.settle([minimal])
        assert (first.fresh, again.fresh) == (True, False)
        assert reply_bytes(minimal, first) == reply_bytes(minimal, again)
        assert gateway.charges == {"s1/charge": 1}


# -- wiring --------------------------------------------------------------------------


async def test_the_worker_settles_each_kind_of_participant_with_its_own_store() -> None:
    ledger = Participant("ledger", {}, script="", domain_keys=lambda prefix: ())
    redis = Redis()  # never connects: registering a script is local
    try:
        handler = settler_for(FakeGateway().participant(), redis, "p.", 1_000)
        script = settler_for(ledger, redis, "p.", 1_000)
    finally:
        await redis.aclose()
    assert isinstance(handler, HandlerStore)
    assert isinstance(script, EffectStore)


async def test_a_handler_runs_in_a_span_of_the_saga_trace_so_its_own_spans_join_it(
    recorded_spans: InMemorySpanExporter,
) -> None:
    """A handler's own span (or an instrumented client's) is a child of the command's
    span, itself a child of the traceparent the command carried."""
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    user_tracer = trace.get_tracer("the-users-gateway-client")

    async def charge(command: Charge, key: str) -> JsonObject:
        with user_tracer.start_as_current_span("POST /charges"):
            return {"receipt": key}

    participant = HandlerParticipant(
        name="gateway", routes={CHARGE: Handler(Charge, Kind.ACTION, charge)}
    )
    command = pending(CHARGE)
    traced = Pending(
        command.command,
        CHARGE,
        Kind.ACTION,
        Apply(),
        traceparent=f"00-{trace_id}-{parent_id}-01",
    )
    await HandlerStore(participant, MemoryStepRecords(), "p:").settle([traced])
    spans = {s.name: s for s in recorded_spans.get_finished_spans()}
    handler_span, client_span = spans[f"gateway {CHARGE} handler"], spans["POST /charges"]
    assert handler_span.parent is not None
    assert client_span.parent is not None
    assert handler_span.parent.span_id == int(parent_id, 16)
    assert client_span.parent.span_id == handler_span.context.span_id
    assert client_span.context.trace_id == int(trace_id, 16)
