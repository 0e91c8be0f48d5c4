"""Pydantic models of every message body on the wire, one per topic (DESIGN.md).

The minimal contract bodies in DESIGN.md validate against these models; our own
optional fields (`message_id`, `command_id`, `attempt`, ...) ride along. Unknown
fields are kept and written back unchanged, so a newer producer's data survives an
older worker. An optional field that is None is left out of the encoded body.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    StrictBool,
    model_serializer,
    model_validator,
)

from schemas import topics
from schemas.fields import (
    Attempt,
    CountryCode,
    CurrencyCode,
    ErrorText,
    Identifier,
    MinorUnits,
    Quantity,
    SagaId,
    SchemaVersion,
    ShortText,
)

SCHEMA_VERSION = 1

JsonObject = dict[str, JsonValue]


class OpenModel(BaseModel):
    """An immutable model that keeps unknown fields, validated as plain JSON values."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, JsonValue] = Field(init=False)

    @model_serializer(mode="wrap")
    def _omit_absent_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # None on a declared field means "absent"; an unknown field keeps its null.
        body: dict[str, Any] = handler(self)
        declared = type(self).model_fields
        return {k: v for k, v in body.items() if v is not None or k not in declared}


class WireMessage(OpenModel):
    """A message body on a saga topic."""

    message_id: Identifier | None = None  # unique per message: the idempotency key
    schema_version: SchemaVersion | None = None


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


class SagaData(WireMessage):
    """The order a saga carries through its steps, and the results of steps done.

    Every field is optional here; a command that needs a field to do its work
    re-declares it as required, so its participant receives validated data.
    """

    order_id: Identifier | None = None
    customer_id: Identifier | None = None
    items: Items | None = None
    payment_method: ShortText | None = None
    shipping_address: Address | None = None
    currency: CurrencyCode | None = None
    results: dict[Identifier, JsonObject] = Field(default_factory=dict)  # by step name


class SagaCommand(SagaData):
    """A command from the orchestrator to a participant. Keyed by `saga_id`."""

    saga_id: SagaId
    step_name: Identifier
    command_id: Identifier | None = None  # echoed in the reply; participants dedupe on it
    attempt: Attempt | None = None


class CompensationCommand(SagaCommand):
    """Undoes a step; `original_result` is the step's result, if it ever replied."""

    original_result: JsonObject | None = None


class ReserveItems(SagaCommand):
    items: Items


class ReleaseReservation(CompensationCommand):
    pass


class ProcessPayment(SagaCommand):
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


class RefundPayment(CompensationCommand):
    pass


class CreateShipment(SagaCommand):
    order_id: Identifier
    shipping_address: Address


class CancelShipment(CompensationCommand):
    pass


class SendOrderConfirmation(SagaCommand):
    order_id: Identifier
    customer_id: Identifier


class SendCancellationNotice(CompensationCommand):
    order_id: Identifier
    customer_id: Identifier


class SagaReply(WireMessage):
    """A participant's answer to a command. Keyed by `saga_id`.

    A reply without `attempt` answers the current attempt of its step.
    """

    saga_id: SagaId
    step_name: Identifier
    command_id: Identifier | None = None
    attempt: Attempt | None = None


class SagaStepCompleted(SagaReply):
    result: JsonObject = Field(default_factory=dict)


class SagaStepFailed(SagaReply):
    error: ErrorText
    retryable: StrictBool | None = None  # None: the step's retry policy decides
    error_code: Identifier | None = None


class SagaCompensationCompleted(SagaReply):
    pass


class SagaOutcome(SagaData):
    """How a saga ended, for the outside world. Keyed by `saga_id`."""

    saga_id: SagaId
    order_id: Identifier


class OrderFulfillmentCompleted(SagaOutcome):
    pass


class OrderFulfillmentFailed(SagaOutcome):
    error: ErrorText


# The body model of each logical topic. The dead-letter topic is absent: its
# values are the original bytes of whatever failed (see schemas.dead_letter).
MESSAGE_TYPES: dict[str, type[WireMessage]] = {
    topics.ORDER_CREATED: OrderCreated,
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
