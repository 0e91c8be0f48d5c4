"""Apps of long-running sagas for the integration tests (and the CLI's `--app`): the
sample's order saga with its approval wait, test-sized, and a parent saga whose steps
run child sagas, built on the sample's topics so the scripted participants answer.

    approvals       OrderFulfillment v2: the approval waits at most a day
    expiring        the same, its approval failing after APPROVAL_DEADLINE
    defaulting      the same, its approval approved by default after APPROVAL_DEADLINE
    families        Family (started by OrderCreated): stock by a child saga, payment,
                    shipment; the child types Stock and Unstock start only as children
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from participants.order_fulfillment import APPROVAL, needs_approval, rejected
from saga_worker import App, ChildSaga, SagaDefinition, Step, StepKind, Wait
from schemas import OrderCreated
from schemas import topics as t
from tests.integration.saga_support import FAST_FULFILLMENT

APPROVAL_DEADLINE = timedelta(seconds=2)
DEFAULT_DECISION: dict[str, object] = {"approved": True, "approver": "nobody in time"}


def approving(approval: Step = APPROVAL) -> SagaDefinition:
    """The sample's version 2 (approval after the stock is held), with test timeouts."""
    first, *rest = FAST_FULFILLMENT.stages
    return dataclasses.replace(FAST_FULFILLMENT, version=2, stages=(first, approval, *rest))


def _orders(definition: SagaDefinition) -> App:
    app = App("long-running-orders")
    app.saga(
        definition, start_topic=t.ORDER_CREATED, start_model=OrderCreated, business_key="order_id"
    )
    return app


def _approval(deadline: timedelta, default: dict[str, object] | None = None) -> Step:
    return Wait(
        APPROVAL.name,
        topic=t.ORDER_APPROVALS,
        correlate="order_id",
        deadline=deadline,
        rejects=rejected,
        when=needs_approval,
        default=default,
    )


approvals = _orders(approving())
expiring = _orders(approving(_approval(APPROVAL_DEADLINE)))
defaulting = _orders(approving(_approval(APPROVAL_DEADLINE, DEFAULT_DECISION)))

PATIENT = timedelta(minutes=5)


def _one_step(name: str, step: str, topic: str) -> SagaDefinition:
    """A child saga of one step, answered by the scripted participants."""
    return SagaDefinition(
        name=name,
        version=1,
        stages=(Step(step, topic, timeout=PATIENT, kind=StepKind.PIVOT),),
        completed_topic=f"{name}.Done",
        failed_topic=f"{name}.Failed",
    )


STOCK = _one_step("Stock", "reserve", t.RESERVE_ITEMS)
UNSTOCK = _one_step("Unstock", "release", t.RELEASE_RESERVATION)

FAMILY = SagaDefinition(
    name="Family",
    version=1,
    stages=(
        ChildSaga("stock", "Stock", compensation_saga="Unstock", timeout=PATIENT),
        Step("pay", t.PROCESS_PAYMENT, t.REFUND_PAYMENT, timeout=PATIENT),
        Step("ship", t.CREATE_SHIPMENT, timeout=PATIENT, kind=StepKind.PIVOT),
    ),
    completed_topic="Family.Done",
    failed_topic="Family.Failed",
)
families = App("families")
families.saga(
    FAMILY, start_topic=t.ORDER_CREATED, start_model=OrderCreated, business_key="order_id"
)
families.saga(STOCK)
families.saga(UNSTOCK)

CUSTOMER_PAYMENTS = "Customer.Payments"


def _by_customer(*, many: bool) -> App:
    """Orders that wait for a payment event of their customer: one customer's event
    names every order of theirs that waits."""
    paid = Wait(
        "paid",
        topic=CUSTOMER_PAYMENTS,
        correlate="customer_id",
        deadline=PATIENT,
        many=many,
        ignore_unmatched=True,
    )
    return _orders(approving(paid))


one_per_customer = _by_customer(many=False)
all_of_a_customer = _by_customer(many=True)
