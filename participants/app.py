"""The order-fulfillment app: one saga type started from OrderCreated, four participants.

It runs OrderFulfillment version 2 (with the approval wait) and keeps version 1
for sagas started before it.

`saga-worker orchestrator` and `saga-worker participant NAME` run this app when
no other is given (`--app participants.app:app`). Shipping reads its countries
(`SAGA_SHIPPING_COUNTRIES`) when its worker starts.
"""

from __future__ import annotations

import os

from participants import keys
from participants.inventory import INVENTORY
from participants.notification import NOTIFICATION
from participants.order_fulfillment import ORDER_FULFILLMENT, ORDER_FULFILLMENT_V2
from participants.payment import PAYMENT
from participants.shipping import countries_from_env, shipping_participant
from saga_worker import App, Participant
from schemas import OrderCreated
from schemas import topics as t

NAMES: tuple[str, ...] = (keys.INVENTORY, keys.PAYMENT, keys.SHIPPING, keys.NOTIFICATION)


def _shipping() -> Participant:
    return shipping_participant(countries_from_env(os.environ))


app = App("order-fulfillment")
ORDER_SAGA = app.saga(
    ORDER_FULFILLMENT_V2,
    start_topic=t.ORDER_CREATED,
    start_model=OrderCreated,
    business_key="order_id",
    older_versions=[ORDER_FULFILLMENT],
)
app.participant(INVENTORY)
app.participant(PAYMENT)
app.participant(_shipping, name=keys.SHIPPING)
app.participant(NOTIFICATION)


def saga_id_for_order(order_id: str) -> str:
    """One order, one saga: the id is derived, so a repeated order finds its saga."""
    return ORDER_SAGA.saga_id(order_id)
