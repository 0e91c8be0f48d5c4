from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from participants.app import saga_id_for_order
from participants.order_fulfillment import (
    ORDER_FULFILLMENT,
    ORDER_FULFILLMENT_V2,
    default_registry,
)
from saga_worker.engine.decide import (
    COMP_RETRY,
    COMP_TIMEOUT,
    RETRY,
    TIMEOUT,
    command_id,
    compensation_id,
    completed_message_id,
    failed_message_id,
    notice_id,
    timer_id,
)
from saga_worker.engine.definition import (
    DEFAULT_RETRY,
    KAFKA_TOPIC_CHARS,
    MAX_NAME_CHARS,
    MAX_TOPIC_CHARS,
    RETRY_FOREVER,
    SAGA_ID_CHARS,
    TOPIC_PREFIX_ROOM,
    WIRE_ID_CHARS,
    WIRE_MAX_ATTEMPT,
    DefinitionRegistry,
    Parallel,
    SagaDefinition,
    Stage,
    Step,
    StepKind,
)
from saga_worker.engine.harness import Fail, SagaHarness, StepScript
from saga_worker.engine.state import SagaStatus
from saga_worker.errors import DefinitionError, UnknownDefinitionError
from saga_worker.wire import (
    Attempt,
    CompensationCommand,
    Identifier,
    SagaCommand,
    SagaOutcome,
)
from schemas import topics


def comp(name: str) -> Step:
    return Step(name, f"svc.{name}", f"svc.undo_{name}")


def pivot(name: str = "p") -> Step:
    return Step(name, f"svc.{name}", kind=StepKind.PIVOT)


def retriable(name: str) -> Step:
    return Step(name, f"svc.{name}", kind=StepKind.RETRIABLE)


def saga(*stages: Stage, **kwargs: Any) -> SagaDefinition:
    return SagaDefinition(
        name=kwargs.pop("name", "S"),
        version=kwargs.pop("version", 1),
        stages=stages,
        completed_topic="Done",
        failed_topic="Failed",
        **kwargs,
    )


def test_order_fulfillment_shape() -> None:
    d = ORDER_FULFILLMENT
    assert d.key == ("OrderFulfillment", 1)
    assert [s.name for s in d.steps.values()] == [
        "reserve_inventory",
        "process_payment",
        "create_shipment",
        "send_confirmation",
    ]
    assert [s.kind for s in d.steps.values()] == [
        StepKind.COMPENSATABLE,
        StepKind.COMPENSATABLE,
        StepKind.PIVOT,
        StepKind.RETRIABLE,
    ]
    assert d.steps["reserve_inventory"].compensation_topic == topics.RELEASE_RESERVATION
    assert d.steps["process_payment"].compensation_topic == topics.REFUND_PAYMENT
    assert d.steps["create_shipment"].compensation_topic == topics.CANCEL_SHIPMENT
    assert d.steps["send_confirmation"].compensation_topic is None
    assert d.steps["send_confirmation"].policy.unlimited
    assert d.failure_notices == (("send_cancellation_notice", topics.SEND_CANCELLATION_NOTICE),)
    assert d.pivot_stage == 2
    for step in d.steps.values():
        assert step.command_topic in topics.COMMAND_TOPICS


def test_kind_default_retry_policies() -> None:
    assert comp("a").policy == DEFAULT_RETRY
    assert retriable("r").policy == RETRY_FOREVER
    assert comp("a").retry is None


def test_parallel_groups_are_flattened_into_stages() -> None:
    d = saga(comp("a"), Parallel(comp("b"), comp("c")), pivot(), Parallel(retriable("r")))
    assert [[s.name for s in g] for g in d.groups] == [["a"], ["b", "c"], ["p"], ["r"]]
    assert d.stage_of == {"a": 0, "b": 1, "c": 1, "p": 2, "r": 3}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (saga, "at least one step"),
        (lambda: saga(comp("a"), comp("a")), "duplicate step name 'a'"),
        (lambda: saga(comp("a"), Parallel(comp("b"), comp("a"))), "duplicate step name 'a'"),
        (lambda: saga(pivot("p"), pivot("q")), "at most one pivot"),
        (lambda: saga(pivot(), comp("a")), "comes after the pivot"),
        (lambda: saga(retriable("r")), "must come after a pivot"),
        (lambda: saga(comp("a"), retriable("r"), pivot()), "must come after a pivot"),
        (Parallel, "at least one step"),
        (lambda: Parallel(comp("a"), pivot()), "cannot be inside a Parallel"),
        (lambda: Parallel(comp("a"), "b"), "holds Steps only"),  # type: ignore[arg-type]
        (lambda: saga("a"), "a Step or a Parallel"),  # type: ignore[arg-type]
        (lambda: Step("a", "svc.a"), "needs a compensation_topic"),
        (
            lambda: Step("r", "svc.r", "svc.undo", kind=StepKind.RETRIABLE),
            "never compensated",
        ),
        (lambda: Step("1a", "svc.a", "svc.b"), "identifier"),
        (lambda: Step("class", "svc.a", "svc.b"), "identifier"),
        (lambda: Step("a b", "svc.a", "svc.b"), "identifier"),
        (lambda: Step("a", "bad topic", "svc.b"), "topic"),
        (lambda: Step("a", "", "svc.b"), "topic"),
        (lambda: Step("a", "svc.a", "svc/b"), "topic"),
        (lambda: Step("a", "svc.a", "svc.b", timeout=timedelta(0)), "timeout"),
        (lambda: Step("a", "svc.a", "svc.b", retry=3), "RetryPolicy"),  # type: ignore[arg-type]
        (lambda: saga(comp("a"), name="Order Saga"), "identifier"),
        (lambda: saga(comp("a"), version=0), "version"),
        (lambda: saga(comp("a"), version="1"), "version"),
        (lambda: saga(comp("a"), compensation_timeout=timedelta(0)), "compensation_timeout"),
        (lambda: saga(comp("a"), failure_notices=(("a", "svc.n"),)), "already used"),
        (
            lambda: saga(comp("a"), failure_notices=(("n", "svc.n"), ("n", "svc.m"))),
            "already used",
        ),
        (lambda: saga(comp("a"), failure_notices=(("n",),)), r"\(name, topic\)"),
    ],
)
def test_invalid_definitions_are_rejected_with_a_clear_message(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()


def test_registry_pins_versions() -> None:
    v1 = saga(comp("a"), name="S", version=1)
    v2 = saga(comp("a"), comp("b"), name="S", version=2)
    v3 = saga(comp("a"), comp("c"), name="S", version=3)
    assert DefinitionRegistry([v1, v2, v3]).latest("S") is v3
    registry = DefinitionRegistry([v1, v2])
    assert registry.get("S", 1) is v1
    assert registry.get("S", 2) is v2
    assert registry.latest("S") is v2
    assert registry.versions("S") == (1, 2)
    assert ("S", 1) in registry
    assert list(registry) == [v1, v2]
    with pytest.raises(UnknownDefinitionError, match=r"'S' version 3 .*known versions: 1, 2"):
        registry.get("S", 3)
    with pytest.raises(UnknownDefinitionError, match="'T'"):
        registry.latest("T")


def test_registry_refuses_a_changed_definition_under_the_same_version() -> None:
    registry = DefinitionRegistry([saga(comp("a"))])
    registry.register(saga(comp("a")))  # the same content again is fine
    with pytest.raises(DefinitionError, match="bump the version"):
        registry.register(saga(comp("b")))


def test_default_registry_holds_order_fulfillment() -> None:
    assert default_registry().latest("OrderFulfillment") is ORDER_FULFILLMENT_V2
    assert default_registry().get("OrderFulfillment", 1) is ORDER_FULFILLMENT


# -- names and topics fit what the wire and Kafka carry --------------------------------

LONGEST = "n" * MAX_NAME_CHARS
TOO_LONG = "n" * (MAX_NAME_CHARS + 1)
UUID_SAGA_ID = saga_id_for_order("o-1")  # a uuid5 string, as App derives every saga id


def test_the_engines_copy_of_the_wire_limits_agrees_with_the_wire() -> None:
    ids = TypeAdapter(Identifier)
    ids.validate_python("x" * WIRE_ID_CHARS)
    with pytest.raises(ValidationError):
        ids.validate_python("x" * (WIRE_ID_CHARS + 1))
    attempts = TypeAdapter(Attempt)
    attempts.validate_python(WIRE_MAX_ATTEMPT)
    with pytest.raises(ValidationError):
        attempts.validate_python(WIRE_MAX_ATTEMPT + 1)
    assert len(UUID_SAGA_ID) == len(str(uuid.uuid5(uuid.NAMESPACE_URL, "x"))) == SAGA_ID_CHARS
    assert MAX_TOPIC_CHARS + TOPIC_PREFIX_ROOM == KAFKA_TOPIC_CHARS == 249


def derived_ids(saga_id: str, name: str, attempt: int) -> dict[str, str]:
    """Every id decide derives, with decide's own functions."""
    return {
        "command": command_id(saga_id, name, attempt),
        "compensation": compensation_id(saga_id, name, attempt),
        "notice": notice_id(saga_id, name),
        "completed": completed_message_id(saga_id),
        "failed": failed_message_id(saga_id),
        **{
            f"timer {k}": timer_id(k, name, attempt)
            for k in (TIMEOUT, RETRY, COMP_TIMEOUT, COMP_RETRY)
        },
    }


def test_the_name_bound_is_exactly_what_the_longest_derived_id_leaves() -> None:
    longest = derived_ids(UUID_SAGA_ID, LONGEST, WIRE_MAX_ATTEMPT)
    assert max(len(i) for i in longest.values()) == WIRE_ID_CHARS  # fits, with no room to spare
    for value in longest.values():
        TypeAdapter(Identifier).validate_python(value)
    one_more = derived_ids(UUID_SAGA_ID, TOO_LONG, WIRE_MAX_ATTEMPT)
    assert len(one_more["command"]) == WIRE_ID_CHARS + 1


@pytest.mark.parametrize(
    ("build", "what"),
    [
        (lambda name: Step(name, "svc.a", "svc.undo_a"), "step name"),
        (lambda name: Step(name, "svc.p", kind=StepKind.PIVOT), "step name"),
        (lambda name: saga(comp("a"), name=name), "saga name"),
        (lambda name: saga(comp("a"), failure_notices=((name, "svc.n"),)), "failure notice name"),
    ],
    ids=["compensatable-step", "pivot-step", "saga", "failure-notice"],
)
def test_a_name_too_long_for_its_derived_ids_is_refused(build: Any, what: str) -> None:
    build(LONGEST)
    with pytest.raises(DefinitionError, match=rf"^{what} 'n+' is 85 characters, more than 84: "):
        build(TOO_LONG)


def test_every_message_of_a_saga_with_the_longest_names_passes_the_wire() -> None:
    definition = saga(
        Step(LONGEST, "svc.n", "svc.undo_n"),
        Step("p" * MAX_NAME_CHARS, "svc.p", kind=StepKind.PIVOT),
        name="s" * MAX_NAME_CHARS,
        failure_notices=(("f" * MAX_NAME_CHARS, "svc.f"),),
    )
    scripts = {"p" * MAX_NAME_CHARS: StepScript(then=Fail("no", retryable=False))}
    harness = SagaHarness(definition, scripts)
    assert harness.run_saga(UUID_SAGA_ID, {"k": "v"}).status is SagaStatus.FAILED
    assert [m.topic for m in harness.published] == [
        "svc.n",
        "svc.p",
        "svc.undo_n",
        "svc.f",
        "Failed",
    ]
    models: dict[str, type[BaseModel]] = {"svc.undo_n": CompensationCommand, "Failed": SagaOutcome}
    for message in harness.published:
        models.get(message.topic, SagaCommand).model_validate(message.payload)  # or dead letter
        TypeAdapter(Identifier).validate_python(message.message_id)


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("t" * (MAX_TOPIC_CHARS + 1), "is 201 characters, more than 200: Kafka allows 249"),
        (".", "valid Kafka topic name"),
        ("..", "valid Kafka topic name"),
    ],
)
@pytest.mark.parametrize(
    "build",
    [
        lambda topic: Step("a", topic, "svc.undo"),
        lambda topic: Step("a", "svc.a", topic),
        lambda topic: SagaDefinition("S", 1, (comp("a"),), topic, "Failed"),
        lambda topic: SagaDefinition("S", 1, (comp("a"),), "Done", topic),
        lambda topic: saga(comp("a"), failure_notices=(("n", topic),)),
    ],
    ids=["command", "compensation", "completed", "failed", "notice"],
)
def test_a_topic_kafka_could_not_hold_under_a_prefix_is_refused(
    build: Any, topic: str, message: str
) -> None:
    build("t" * MAX_TOPIC_CHARS)
    with pytest.raises(DefinitionError, match=message):
        build(topic)


# -- every refusal names what is wrong, word for word -----------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Step(5, "svc.a", "svc.b"),  # type: ignore[arg-type]
            "step name must be a Python-style identifier, got 5",
        ),
        (
            lambda: Step("a", "bad topic", "svc.b"),
            "step 'a' command_topic must be a valid Kafka topic name, got 'bad topic'",
        ),
        (
            lambda: Step("a", 5, "svc.b"),  # type: ignore[arg-type]
            "step 'a' command_topic must be a valid Kafka topic name, got 5",
        ),
        (
            lambda: Step("a", "svc.a", "svc/b"),
            "step 'a' compensation_topic must be a valid Kafka topic name, got 'svc/b'",
        ),
        (
            lambda: Step("a", "svc.a", "svc.b", kind="pivot"),  # type: ignore[arg-type]
            "step 'a': kind must be a StepKind",
        ),
        (
            lambda: Step("a", "svc.a"),
            "compensatable step 'a' needs a compensation_topic "
            "(or make it the pivot or a retriable step)",
        ),
        (
            lambda: Step("r", "svc.r", "svc.undo", kind=StepKind.RETRIABLE),
            "retriable step 'r' is never compensated: drop its compensation_topic",
        ),
        (
            lambda: Step("a", "svc.a", "svc.b", timeout=timedelta(seconds=-1)),
            "step 'a': timeout must be a positive timedelta",
        ),
        (
            lambda: Step("a", "svc.a", "svc.b", timeout=5),  # type: ignore[arg-type]
            "step 'a': timeout must be a positive timedelta",
        ),
        (
            lambda: Step("a", "svc.a", "svc.b", retry=3),  # type: ignore[arg-type]
            "step 'a': retry must be a RetryPolicy",
        ),
        (Parallel, "a Parallel group needs at least one step"),
        (
            lambda: Parallel(comp("a"), pivot("p")),
            "pivot step 'p' cannot be inside a Parallel group",
        ),
        (
            lambda: Parallel(comp("a"), "b"),  # type: ignore[arg-type]
            "a Parallel group holds Steps only, got 'b'",
        ),
        (saga, "saga 'S' needs at least one step"),
        (
            lambda: saga(comp("a"), name="Order Saga"),
            "saga name must be a Python-style identifier, got 'Order Saga'",
        ),
        (lambda: saga(comp("a"), version=0), "saga 'S': version must be an int >= 1"),
        (lambda: saga(comp("a"), version=True), "saga 'S': version must be an int >= 1"),
        (
            lambda: SagaDefinition("S", 1, (comp("a"),), "a b", "Failed"),
            "saga 'S' completed_topic must be a valid Kafka topic name, got 'a b'",
        ),
        (
            lambda: SagaDefinition("S", 1, (comp("a"),), "Done", "a b"),
            "saga 'S' failed_topic must be a valid Kafka topic name, got 'a b'",
        ),
        (
            lambda: saga(comp("a"), compensation_retry=3),
            "saga 'S': compensation_retry must be a RetryPolicy",
        ),
        (
            lambda: saga(comp("a"), compensation_retry=DEFAULT_RETRY.max_attempts),
            "saga 'S': compensation_retry must be a RetryPolicy",
        ),
        (
            lambda: saga(comp("a"), compensation_timeout=timedelta(0)),
            "saga 'S': compensation_timeout must be positive",
        ),
        (
            lambda: saga("a"),  # type: ignore[arg-type]
            "saga 'S': a stage is a Step or a Parallel group, got 'a'",
        ),
        (lambda: saga(comp("a"), comp("a")), "saga 'S': duplicate step name 'a'"),
        (
            lambda: saga(pivot("p"), pivot("q")),
            "saga 'S': at most one pivot step, found 'p' and 'q'",
        ),
        (
            lambda: saga(pivot(), comp("a")),
            "saga 'S': compensatable step 'a' comes after the pivot; "
            "only retriable steps may follow it",
        ),
        (
            lambda: saga(retriable("r")),
            "saga 'S': retriable step 'r' must come after a pivot step",
        ),
        (
            lambda: saga(comp("a"), failure_notices=(("n",),)),
            "saga 'S': a failure notice is (name, topic)",
        ),
        (
            lambda: saga(comp("a"), failure_notices=(("1n", "svc.n"),)),
            "failure notice name must be a Python-style identifier, got '1n'",
        ),
        (
            lambda: saga(comp("a"), failure_notices=(("n", "a b"),)),
            "failure notice 'n' topic must be a valid Kafka topic name, got 'a b'",
        ),
        (
            lambda: saga(comp("a"), failure_notices=(("a", "svc.n"),)),
            "saga 'S': failure notice name 'a' is already used",
        ),
        (
            lambda: Step("a", "t" * (MAX_TOPIC_CHARS + 1), "svc.b"),
            f"step 'a' command_topic '{'t' * 201}' is 201 characters, more than 200: "
            "Kafka allows 249, less 49 kept for the deployment prefix",
        ),
        (
            lambda: Step(TOO_LONG, "svc.a", "svc.b"),
            f"step name '{TOO_LONG}' is 85 characters, more than 84: "
            "the ids derived from it would not fit the wire's 128-character ids",
        ),
    ],
)
def test_a_refusal_says_exactly_what_is_wrong(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=f"^{re.escape(message)}$"):
        build()


def test_a_changed_definition_under_a_registered_version_is_refused_word_for_word() -> None:
    registry = DefinitionRegistry([saga(comp("a"))])
    message = "saga 'S' version 1 is already registered with different content; bump the version"
    with pytest.raises(DefinitionError, match=f"^{re.escape(message)}$"):
        registry.register(saga(comp("b")))


def test_a_definition_knows_its_pivot_and_hashes_by_its_key() -> None:
    a, b = comp("a"), comp("b")
    group = Parallel(a, b)
    assert list(group) == [a, b]
    assert saga(group, pivot()).pivot_stage == 1
    assert saga(comp("a")).pivot_stage is None
    d = saga(comp("a"), pivot(), retriable("r"))
    assert d.pivot_stage == 1
    assert hash(d) == hash(("S", 1)) == hash(saga(comp("a")))
    assert len({d, saga(comp("a")), saga(comp("a"), version=2)}) == 3
