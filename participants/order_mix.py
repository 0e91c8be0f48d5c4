"""Orders for demos and load: mostly good ones, and a planned share that must fail.

Each planned failure breaks one rule of the sample participants (see
participants/): a SKU with too little stock, a declined card, a destination
shipping does not serve, a customer without the money. Good orders stay small
and avoid the scarce SKU, so they succeed against the demo seed. Large orders (two
espresso machines, above the sample's approval threshold) wait for a manager, who
approves or rejects them as planned.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from participants.seed import DEMO_SEED, SeedData

SCARCE_SKU = "sku-limited-dripper"
# Well stocked in the demo seed: a few hundred good orders never run them out.
EVERYDAY_SKUS = ("sku-espresso-beans", "sku-filter-papers", "sku-ceramic-mug")
GOOD_COUNTRIES = ("FR", "DE", "NL", "ES", "IT", "GB", "US")
UNSERVED_COUNTRY = "AQ"  # Antarctica: no carrier goes there
GOOD_CUSTOMERS = tuple(f"cust-{n:03d}" for n in range(1, 51))
BROKE_CUSTOMER = "cust-broke"
WHALE_CUSTOMER = "cust-whale"  # can pay for anything
LARGE_ORDER_SKU = "sku-espresso-machine"
REJECTED_EVERY = 4  # of the large orders, every fourth is rejected


class Plan(StrEnum):
    COMPLETES = "completes"
    OUT_OF_STOCK = "out of stock"
    DECLINED = "declined payment"
    UNSERVED_ADDRESS = "unsupported address"
    NO_FUNDS = "insufficient funds"
    APPROVED = "approved by a manager"
    REJECTED = "rejected by a manager"


FAILING_PLANS = (Plan.OUT_OF_STOCK, Plan.DECLINED, Plan.UNSERVED_ADDRESS, Plan.NO_FUNDS)


@dataclass(frozen=True)
class PlannedOrder:
    plan: Plan
    body: dict[str, Any]

    @property
    def order_id(self) -> str:
        return str(self.body["order_id"])


def plan_orders(
    count: int,
    fail_share: float,
    rng: random.Random,
    seed: SeedData = DEMO_SEED,
    large_share: float = 0.0,
) -> list[PlannedOrder]:
    """`count` orders, of which about `fail_share` break one rule each and about
    `large_share` wait for a manager's approval, shuffled."""
    if not 0 <= fail_share <= 1 or not 0 <= large_share <= 1 - fail_share:
        raise ValueError("fail_share and large_share must be within 0..1, together too")
    failing = round(count * fail_share)
    large = round(count * large_share)
    plans = [FAILING_PLANS[i % len(FAILING_PLANS)] for i in range(failing)]
    plans += [
        Plan.REJECTED if i % REJECTED_EVERY == REJECTED_EVERY - 1 else Plan.APPROVED
        for i in range(large)
    ]
    plans += [Plan.COMPLETES] * (count - failing - large)
    rng.shuffle(plans)
    return [PlannedOrder(plan, _order(plan, rng, seed)) for plan in plans]


def _order(plan: Plan, rng: random.Random, seed: SeedData) -> dict[str, Any]:
    lines = rng.sample(EVERYDAY_SKUS, k=rng.randint(1, 2))
    items = [
        {"sku": sku, "quantity": rng.randint(1, 2), "unit_price": seed.price(sku)} for sku in lines
    ]
    customer = rng.choice(GOOD_CUSTOMERS)
    method = rng.choice(("card", "paypal"))
    country = rng.choice(GOOD_COUNTRIES)
    if plan is Plan.OUT_OF_STOCK:
        scarce = seed.stock.get(SCARCE_SKU, 0)
        items = [{"sku": SCARCE_SKU, "quantity": scarce + 1, "unit_price": seed.price(SCARCE_SKU)}]
    elif plan is Plan.DECLINED:
        method = "declined_card"
    elif plan is Plan.UNSERVED_ADDRESS:
        country = UNSERVED_COUNTRY
    elif plan is Plan.NO_FUNDS:
        customer = BROKE_CUSTOMER
    elif plan in (Plan.APPROVED, Plan.REJECTED):
        items = [{"sku": LARGE_ORDER_SKU, "quantity": 2, "unit_price": seed.price(LARGE_ORDER_SKU)}]
        customer = WHALE_CUSTOMER
    return {
        "order_id": f"ord-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
        "customer_id": customer,
        "items": items,
        "payment_method": method,
        "shipping_address": {"line1": "1 Demo Street", "city": "Demo", "country": country},
        "currency": "EUR",
    }
