"""The order-fulfillment sample's messages: the order that starts a saga, the
commands its participants read, and its outcomes (DESIGN.md, wire contract).

Built on the library's envelope (`saga_worker.SagaCommand`, ...): a command
re-declares the order fields its participant needs as required.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, StrictBool, model_validator

from saga_worker import (
    CompensationCommand,
    ErrorText,
    Identifier,
    OpenModel,
    SagaCommand,
    SagaCompensationCompleted,
    SagaOutcome,
    SagaStepCompleted,
    SagaStepFailed,
    ShortText,
    WireMessage,
)
from schemas import topics
from schemas.fields import CountryCode, CurrencyCode, MinorUnits, Quantity


class OrderItem(OpenModel):
    sku: Identifier
    quantity: Quantity
    unit_price: MinorUnits

    @property
    def line_total(self) -> int:
        return self.quantity * self.unit_price


Items = Annotated[list[OrderItem], Field(min_length=1, max_length=100)]


def order_total(items: list[OrderItem]) -> int:
    """The sum of the line totals, in minor units."""
    return sum(item.line_total for item in items)


class Address(OpenModel):
    """A postal address; only the country is required, so sparse test data passes."""

    name: ShortText | None = None
    line1: ShortText | None = None
    line2: ShortText | None = None
    city: ShortText | None = None
    region: ShortText | None = None
    postal_code: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    country: CountryCode


class OrderCreated(WireMessage):
    """An order placed by the outside world; starts one saga."""

    order_id: Identifier
    customer_id: Identifier
    items: Items
    payment_method: ShortText
    shipping_address: Address
    currency: CurrencyCode | None = None


class OrderApproval(WireMessage):
    """A manager's decision on an order waiting for approval: `approved` true is
    OrderApproved, false is OrderRejected. Correlated to its saga by `order_id`."""

    order_id: Identifier
    approved: StrictBool
    approver: ShortText | None = None
    reason: ShortText | None = None


class OrderCommand(SagaCommand):
    """A command of the OrderFulfillment saga: the order travels with it.

    Every order field is optional here; a command that needs a field to do its
    work re-declares it as required, so its participant receives validated data.
    """

    order_id: Identifier | None = None
    customer_id: Identifier | None = None
    items: Items | None = None
    payment_method: ShortText | None = None
    shipping_address: Address | None = None
    currency: CurrencyCode | None = None


class OrderCompensation(OrderCommand, CompensationCommand):
    """Undoes a step of the order saga."""


class ReserveItems(OrderCommand):
    items: Items


class ReleaseReservation(OrderCompensation):
    pass


class ProcessPayment(OrderCommand):
    """Charges the customer `amount`, or the order total when no amount is given."""

    customer_id: Identifier
    amount: MinorUnits | None = None

    @model_validator(mode="after")
    def _has_something_to_charge(self) -> Self:
        if self.amount is None and self.items is None:
            raise ValueError("ProcessPayment needs `amount` or `items`")
        return self

    @property
    def amount_due(self) -> int:
        return self.amount if self.amount is not None else order_total(self.items or [])


class RefundPayment(OrderCompensation):
    pass


class CreateShipment(OrderCommand):
    order_id: Identifier
    shipping_address: Address


class CancelShipment(OrderCompensation):
    pass


class SendOrderConfirmation(OrderCommand):
    order_id: Identifier
    customer_id: Identifier


class SendCancellationNotice(OrderCompensation):
    order_id: Identifier
    customer_id: Identifier


class OrderOutcome(SagaOutcome):
    """How an order's saga ended."""

    order_id: Identifier


class OrderFulfillmentCompleted(OrderOutcome):
    pass


class OrderFulfillmentFailed(OrderOutcome):
    error: ErrorText


# The body model of each logical topic. The dead-letter topic is absent: its
# values are the original bytes of whatever failed (see schemas.dead_letter).
MESSAGE_TYPES: dict[str, type[WireMessage]] = {
    topics.ORDER_CREATED: OrderCreated,
    topics.ORDER_APPROVALS: OrderApproval,
    topics.RESERVE_ITEMS: ReserveItems,
    topics.RELEASE_RESERVATION: ReleaseReservation,
    topics.PROCESS_PAYMENT: ProcessPayment,
    topics.REFUND_PAYMENT: RefundPayment,
    topics.CREATE_SHIPMENT: CreateShipment,
    topics.CANCEL_SHIPMENT: CancelShipment,
    topics.SEND_ORDER_CONFIRMATION: SendOrderConfirmation,
    topics.SEND_CANCELLATION_NOTICE: SendCancellationNotice,
    topics.STEP_COMPLETED: SagaStepCompleted,
    topics.STEP_FAILED: SagaStepFailed,
    topics.COMPENSATION_COMPLETED: SagaCompensationCompleted,
    topics.FULFILLMENT_COMPLETED: OrderFulfillmentCompleted,
    topics.FULFILLMENT_FAILED: OrderFulfillmentFailed,
}
