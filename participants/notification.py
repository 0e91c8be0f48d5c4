"""Notification: each order's confirmation or cancellation notice, sent once.

A notice is an entry on a Redis stream (`<prefix>{notification}:notices`, so users
can `XREAD` it) with kind, order_id, customer_id and saga_id. It goes out once
per order and kind however often, and by whichever saga, the command comes.

Both topics are actions: SendCancellationNotice is the saga's failure notice, not
the compensation of a confirmation (see saga_worker.order_fulfillment); it is
answered SagaStepCompleted like any action, and nobody waits for that reply.
"""

from __future__ import annotations

from participants import LUA, keys
from saga_worker import Apply, JsonObject, Kind, Participant, Route, Verdict
from schemas import SendCancellationNotice, SendOrderConfirmation
from schemas import topics as t

CONFIRMATION = "confirmation"
CANCELLATION = "cancellation"


def _notice(kind: str, saga_id: str, order_id: str, customer_id: str) -> Verdict:
    args: JsonObject = {
        "kind": kind,
        "saga_id": saga_id,
        "order_id": order_id,
        "customer_id": customer_id,
    }
    return Apply(args=args, result={"notice": kind, "order_id": order_id}, effect=args)


def prepare_confirmation(command: SendOrderConfirmation) -> Verdict:
    return _notice(CONFIRMATION, command.saga_id, command.order_id, command.customer_id)


def prepare_cancellation(command: SendCancellationNotice) -> Verdict:
    return _notice(CANCELLATION, command.saga_id, command.order_id, command.customer_id)


def _domain_keys(prefix: str) -> tuple[str, ...]:
    k = keys.notification(prefix)
    return (k.notices, k.sent, k.sent_written, k.trimmed)


NOTIFICATION = Participant(
    name=keys.NOTIFICATION,
    routes={
        t.SEND_ORDER_CONFIRMATION: Route(SendOrderConfirmation, Kind.ACTION, prepare_confirmation),
        t.SEND_CANCELLATION_NOTICE: Route(
            SendCancellationNotice, Kind.ACTION, prepare_cancellation
        ),
    },
    script=LUA / "notification.lua",
    domain_keys=_domain_keys,
)
