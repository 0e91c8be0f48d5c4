"""Topic names of the order-fulfillment sample (DESIGN.md), before any deployment prefix.

Every name here is logical; `saga_worker.Topics(prefix)` gives the physical name a
worker uses. The reply and dead-letter topics are the library's, shared by every saga.
"""

from __future__ import annotations

from saga_worker import (
    COMPENSATION_COMPLETED,
    DEAD_LETTER,
    REPLY_TOPICS,
    STEP_COMPLETED,
    STEP_FAILED,
    Topics,
)

ORDER_CREATED = "OrderCreated"

RESERVE_ITEMS = "InventoryService.ReserveItems"
RELEASE_RESERVATION = "InventoryService.ReleaseReservation"
PROCESS_PAYMENT = "PaymentService.ProcessPayment"
REFUND_PAYMENT = "PaymentService.RefundPayment"
CREATE_SHIPMENT = "ShippingService.CreateShipment"
CANCEL_SHIPMENT = "ShippingService.CancelShipment"
SEND_ORDER_CONFIRMATION = "NotificationService.SendOrderConfirmation"
SEND_CANCELLATION_NOTICE = "NotificationService.SendCancellationNotice"

# A manager's decision on an order above the approval threshold (OrderApproval).
ORDER_APPROVALS = "OrderApprovals"

FULFILLMENT_COMPLETED = "OrderFulfillmentCompleted"
FULFILLMENT_FAILED = "OrderFulfillmentFailed"


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
OUTCOME_TOPICS: tuple[str, ...] = (FULFILLMENT_COMPLETED, FULFILLMENT_FAILED)
ALL_TOPICS: tuple[str, ...] = (
    ORDER_CREATED,
    ORDER_APPROVALS,
    *COMMAND_TOPICS,
    *REPLY_TOPICS,
    *OUTCOME_TOPICS,
    DEAD_LETTER,
)

__all__ = [
    "ALL_TOPICS",
    "CANCEL_SHIPMENT",
    "COMMAND_TOPICS",
    "COMPENSATION_COMPLETED",
    "CREATE_SHIPMENT",
    "DEAD_LETTER",
    "FULFILLMENT_COMPLETED",
    "FULFILLMENT_FAILED",
    "ORDER_APPROVALS",
    "ORDER_CREATED",
    "OUTCOME_TOPICS",
    "PROCESS_PAYMENT",
    "REFUND_PAYMENT",
    "RELEASE_RESERVATION",
    "REPLY_TOPICS",
    "RESERVE_ITEMS",
    "SEND_CANCELLATION_NOTICE",
    "SEND_ORDER_CONFIRMATION",
    "STEP_COMPLETED",
    "STEP_FAILED",
    "Topics",
]
