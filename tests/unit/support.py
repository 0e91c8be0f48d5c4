"""Shared test data and small helpers for the engine tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from saga_worker.engine.definition import Parallel, SagaDefinition, Step, StepKind
from saga_worker.engine.retry import RetryPolicy

ORDER_DATA: dict[str, Any] = {
    "order_id": "ord-12345",
    "customer_id": "cust-42",
    "items": [
        {"sku": "SKU-1", "quantity": 2, "unit_price": "19.99"},
        {"sku": "SKU-2", "quantity": 1, "unit_price": "5.00"},
    ],
    "payment_method": "card",
    "shipping_address": {
        "line1": "1 Main St",
        "city": "Springfield",
        "postcode": "12345",
        "country": "US",
    },
}

RESULTS: dict[str, dict[str, Any]] = {
    "reserve_inventory": {"reservation_id": "res-1"},
    "process_payment": {"payment_id": "pay-1", "amount": "44.98"},
    "create_shipment": {"shipment_id": "shp-1", "tracking_number": "TRK123"},
    "send_confirmation": {"notification_id": "ntf-1"},
}

FAST_RETRY = RetryPolicy(
    max_attempts=2,
    initial_backoff=timedelta(seconds=1),
    max_backoff=timedelta(seconds=4),
    jitter=0.0,
)


def parallel_definition() -> SagaDefinition:
    """a, then b and c together, then the pivot d, then e and f together (retriable)."""
    return SagaDefinition(
        name="ParallelSaga",
        version=1,
        stages=(
            Step("a", "svc.A", "svc.UndoA", retry=FAST_RETRY),
            Parallel(
                Step("b", "svc.B", "svc.UndoB", retry=FAST_RETRY),
                Step("c", "svc.C", "svc.UndoC", retry=FAST_RETRY),
            ),
            Step("d", "svc.D", retry=FAST_RETRY, kind=StepKind.PIVOT),
            Parallel(
                Step("e", "svc.E", kind=StepKind.RETRIABLE),
                Step("f", "svc.F", kind=StepKind.RETRIABLE),
            ),
        ),
        completed_topic="Done",
        failed_topic="Failed",
        compensation_retry=RetryPolicy(
            max_attempts=3, initial_backoff=timedelta(seconds=1), jitter=0.0
        ),
        compensation_timeout=timedelta(seconds=5),
    )
