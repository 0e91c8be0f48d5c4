"""The OrderFulfillment saga: version 2, and version 1 for sagas started before it.

    reserve_inventory   ReserveItems -> ReleaseReservation          compensatable
    approval            waits for OrderApprovals (v2 only)          wait
    process_payment     ProcessPayment -> RefundPayment             compensatable
    create_shipment     CreateShipment (CancelShipment)             pivot
    send_confirmation   SendOrderConfirmation                       retriable

Why this shape: once a shipment exists the order is going out, so
create_shipment is the pivot: after it succeeded the saga only moves forward,
and the confirmation e-mail is retried until it is sent. CancelShipment is
the pivot's compensation in the narrow sense the DSL gives it: it is sent only
when the shipment's outcome is unknown (CreateShipment timed out on its last
attempt, or an operator aborted while it was in flight) and the saga fails,
so a shipment created behind our back is cancelled (the shipping participant
leaves a tombstone if the cancel arrives first).

SendCancellationNotice is not a compensation (an order confirmation is never
sent before the pivot, so there is nothing to undo): it is a failure notice,
sent once when the saga ends FAILED, next to OrderFulfillmentFailed, so the
customer hears that the order was cancelled. The notification participant
deduplicates it by command_id; no reply is awaited.

Version 2 adds a manager's approval for orders whose total is above
SAGA_APPROVAL_ABOVE (minor units, default 100000): with the stock held, the saga
waits for an OrderApproval with its order_id on OrderApprovals, at most
SAGA_APPROVAL_DEADLINE_S seconds (default a day). Approved, it goes on to the
payment, the decision among its results; rejected, or not decided in time, it
releases the stock and fails. Smaller orders skip the wait.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from saga_worker import DefinitionRegistry, RetryPolicy, SagaDefinition, Step, StepKind, Wait
from schemas import topics

STEP_TIMEOUT = timedelta(seconds=10)

# Business steps: a few quick retries for transient failures, then give up and compensate.
STEP_RETRY = RetryPolicy(
    max_attempts=3,
    initial_backoff=timedelta(milliseconds=500),
    multiplier=2.0,
    max_backoff=timedelta(seconds=5),
    jitter=0.2,
)
# After the pivot: retried until it succeeds, at most a minute apart.
CONFIRMATION_RETRY = RetryPolicy(
    max_attempts=None,
    initial_backoff=timedelta(seconds=1),
    multiplier=2.0,
    max_backoff=timedelta(seconds=60),
    jitter=0.2,
)
# Compensations must not give up quickly: ~20 attempts over roughly a quarter of an
# hour before an operator is asked to step in.
COMPENSATION_RETRY = RetryPolicy(
    max_attempts=20,
    initial_backoff=timedelta(seconds=1),
    multiplier=2.0,
    max_backoff=timedelta(seconds=60),
    jitter=0.2,
)

ORDER_FULFILLMENT = SagaDefinition(
    name="OrderFulfillment",
    version=1,
    stages=(
        Step(
            "reserve_inventory",
            topics.RESERVE_ITEMS,
            topics.RELEASE_RESERVATION,
            timeout=STEP_TIMEOUT,
            retry=STEP_RETRY,
        ),
        Step(
            "process_payment",
            topics.PROCESS_PAYMENT,
            topics.REFUND_PAYMENT,
            timeout=STEP_TIMEOUT,
            retry=STEP_RETRY,
        ),
        Step(
            "create_shipment",
            topics.CREATE_SHIPMENT,
            topics.CANCEL_SHIPMENT,
            timeout=STEP_TIMEOUT,
            retry=STEP_RETRY,
            kind=StepKind.PIVOT,
        ),
        Step(
            "send_confirmation",
            topics.SEND_ORDER_CONFIRMATION,
            timeout=STEP_TIMEOUT,
            retry=CONFIRMATION_RETRY,
            kind=StepKind.RETRIABLE,
        ),
    ),
    completed_topic=topics.FULFILLMENT_COMPLETED,
    failed_topic=topics.FULFILLMENT_FAILED,
    compensation_retry=COMPENSATION_RETRY,
    compensation_timeout=STEP_TIMEOUT,
    failure_notices=(("send_cancellation_notice", topics.SEND_CANCELLATION_NOTICE),),
)


APPROVAL_ABOVE = int(os.environ.get("SAGA_APPROVAL_ABOVE", "100000"))
APPROVAL_DEADLINE = timedelta(seconds=float(os.environ.get("SAGA_APPROVAL_DEADLINE_S", "86400")))


def needs_approval(order: Mapping[str, Any]) -> bool:
    """Whether an order's total is above the approval threshold."""
    total = sum(int(i["quantity"]) * int(i["unit_price"]) for i in order.get("items") or ())
    return total > APPROVAL_ABOVE


def rejected(decision: Mapping[str, Any]) -> bool:
    return decision.get("approved") is not True


APPROVAL = Wait(
    "approval",
    topic=topics.ORDER_APPROVALS,
    correlate="order_id",
    deadline=APPROVAL_DEADLINE,
    rejects=rejected,
    when=needs_approval,
)

ORDER_FULFILLMENT_V2 = dataclasses.replace(
    ORDER_FULFILLMENT,
    version=2,
    stages=(ORDER_FULFILLMENT.stages[0], APPROVAL, *ORDER_FULFILLMENT.stages[1:]),
)


def default_registry() -> DefinitionRegistry:
    """A registry holding every shipped version of the built-in definitions."""
    return DefinitionRegistry([ORDER_FULFILLMENT, ORDER_FULFILLMENT_V2])
