"""The order-fulfillment sample's wire messages, built on saga_worker's envelope.

Pure: nothing here touches Kafka or Redis (only `schemas.export` writes files).
"""

from schemas.messages import (
    MESSAGE_TYPES,
    Address,
    CancelShipment,
    CreateShipment,
    OrderApproval,
    OrderCommand,
    OrderCompensation,
    OrderCreated,
    OrderFulfillmentCompleted,
    OrderFulfillmentFailed,
    OrderItem,
    OrderOutcome,
    ProcessPayment,
    RefundPayment,
    ReleaseReservation,
    ReserveItems,
    SendCancellationNotice,
    SendOrderConfirmation,
    order_total,
)

__all__ = [
    "MESSAGE_TYPES",
    "Address",
    "CancelShipment",
    "CreateShipment",
    "OrderApproval",
    "OrderCommand",
    "OrderCompensation",
    "OrderCreated",
    "OrderFulfillmentCompleted",
    "OrderFulfillmentFailed",
    "OrderItem",
    "OrderOutcome",
    "ProcessPayment",
    "RefundPayment",
    "ReleaseReservation",
    "ReserveItems",
    "SendCancellationNotice",
    "SendOrderConfirmation",
    "order_total",
]
