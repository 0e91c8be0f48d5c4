from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from participants.order_fulfillment import ORDER_FULFILLMENT, default_registry
from saga_worker.engine.definition import (
    DEFAULT_RETRY,
    RETRY_FOREVER,
    DefinitionRegistry,
    Parallel,
    SagaDefinition,
    Stage,
    Step,
    StepKind,
)
from saga_worker.errors import DefinitionError, UnknownDefinitionError
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
    assert default_registry().latest("OrderFulfillment") is ORDER_FULFILLMENT
