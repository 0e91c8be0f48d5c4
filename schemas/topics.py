"""Topic names of the wire contract (DESIGN.md), before any deployment prefix.

Every name here is logical; `Topics(prefix)` gives the physical name a worker uses.
"""

from __future__ import annotations

from dataclasses import dataclass

ORDER_CREATED = "OrderCreated"

RESERVE_ITEMS = "InventoryService.ReserveItems"
RELEASE_RESERVATION = "InventoryService.ReleaseReservation"
PROCESS_PAYMENT = "PaymentService.ProcessPayment"
REFUND_PAYMENT = "PaymentService.RefundPayment"
CREATE_SHIPMENT = "ShippingService.CreateShipment"
CANCEL_SHIPMENT = "ShippingService.CancelShipment"
SEND_ORDER_CONFIRMATION = "NotificationService.SendOrderConfirmation"
SEND_CANCELLATION_NOTICE = "NotificationService.SendCancellationNotice"

STEP_COMPLETED = "SagaStepCompleted"
STEP_FAILED = "SagaStepFailed"
COMPENSATION_COMPLETED = "SagaCompensationCompleted"

FULFILLMENT_COMPLETED = "OrderFulfillmentCompleted"
FULFILLMENT_FAILED = "OrderFulfillmentFailed"

DEAD_LETTER = "saga-worker.dead-letter"

COMMAND_TOPICS: tuple[str, ...] = (
    RESERVE_ITEMS,
    RELEASE_RESERVATION,
    PROCESS_PAYMENT,
    REFUND_PAYMENT,
    CREATE_SHIPMENT,
    CANCEL_SHIPMENT,
    SEND_ORDER_CONFIRMATION,
    SEND_CANCELLATION_NOTICE,
)
REPLY_TOPICS: tuple[str, ...] = (STEP_COMPLETED, STEP_FAILED, COMPENSATION_COMPLETED)
OUTCOME_TOPICS: tuple[str, ...] = (FULFILLMENT_COMPLETED, FULFILLMENT_FAILED)
ALL_TOPICS: tuple[str, ...] = (
    ORDER_CREATED,
    *COMMAND_TOPICS,
    *REPLY_TOPICS,
    *OUTCOME_TOPICS,
    DEAD_LETTER,
)


@dataclass(frozen=True)
class Topics:
    """Maps logical topic names to physical ones under a deployment prefix."""

    prefix: str = ""

    def physical(self, logical: str) -> str:
        return f"{self.prefix}{logical}"

    def logical(self, physical: str) -> str:
        if self.prefix and not physical.startswith(self.prefix):
            raise ValueError(f"topic {physical!r} lacks the prefix {self.prefix!r}")
        return physical[len(self.prefix) :]
