"""Demo data: a small coffee-gear catalogue, its stock and customer balances.

`load_seed` replaces the catalogue, stock and balances under a key prefix and
returns what it loaded, so a conservation check (participants.conservation) can
compare the state after a run with it. Reading the state back: participants.inspection.
Each load records when it happened (`<prefix>sample:seeded`); `load_seed_once` loads
only where nothing was loaded before, so a deployment that seeds at every start
(`python -m participants seed --once`, docker-compose.yml) seeds once: reloading the
stock and balances while reservations and charges remain would break conservation.

Customers worth knowing in the demo: `cust-broke` has 5.00 (most orders fail on
payment); `sku-limited-dripper` has 3 units (a burst of orders runs out of stock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from participants import keys
from saga_worker import RedisClient, Settings, make_redis


@dataclass(frozen=True)
class CatalogueItem:
    sku: str
    name: str
    unit_price: int  # minor units


@dataclass(frozen=True)
class SeedData:
    catalogue: tuple[CatalogueItem, ...] = ()
    stock: Mapping[str, int] = field(default_factory=dict)  # sku -> units
    balances: Mapping[str, int] = field(default_factory=dict)  # customer -> minor units

    def price(self, sku: str) -> int:
        return next(item.unit_price for item in self.catalogue if item.sku == sku)


DEMO_CATALOGUE = (
    CatalogueItem("sku-espresso-beans", "Espresso beans, 1 kg", 2490),
    CatalogueItem("sku-filter-papers", "Filter papers, 100", 590),
    CatalogueItem("sku-ceramic-mug", "Ceramic mug", 1490),
    CatalogueItem("sku-gooseneck-kettle", "Gooseneck kettle", 6900),
    CatalogueItem("sku-coffee-scale", "Coffee scale", 3990),
    CatalogueItem("sku-burr-grinder", "Burr grinder", 12900),
    CatalogueItem("sku-limited-dripper", "Limited edition dripper", 8900),
    CatalogueItem("sku-espresso-machine", "Dual boiler espresso machine", 64900),
)

DEMO_SEED = SeedData(
    catalogue=DEMO_CATALOGUE,
    stock={
        "sku-espresso-beans": 1000,
        "sku-filter-papers": 2000,
        "sku-ceramic-mug": 500,
        "sku-gooseneck-kettle": 120,
        "sku-coffee-scale": 150,
        "sku-burr-grinder": 60,
        "sku-limited-dripper": 3,
        "sku-espresso-machine": 200,
    },
    balances={
        **{f"cust-{n:03d}": 50_000 + 25_000 * (n % 8) for n in range(1, 51)},
        "cust-broke": 500,
        "cust-whale": 10_000_000,
    },
)


def seeded_marker(key_prefix: str) -> str:
    """The key that says when the sample's data was last loaded under `key_prefix`."""
    return f"{key_prefix}sample:seeded"


async def load_seed(redis: RedisClient, key_prefix: str, data: SeedData = DEMO_SEED) -> SeedData:
    """Replaces catalogue, stock and balances under `key_prefix`; returns `data`.

    Reservations, charges, shipments and notices are left alone: seed before a run.
    """
    await _replace(redis, key_prefix, data)
    await redis.set(seeded_marker(key_prefix), _now())
    return data


async def load_seed_once(
    redis: RedisClient, key_prefix: str, data: SeedData = DEMO_SEED
) -> str | None:
    """Loads `data` unless something was loaded under `key_prefix` before.

    Returns None when it loaded now, else when the earlier load happened (as it was
    recorded). Two at once load once: the mark is claimed first (SET NX), and the
    loser of the race reads the winner's. A load that fails gives the mark back.
    """
    marker = seeded_marker(key_prefix)
    if not await redis.set(marker, _now(), nx=True):
        before = await redis.get(marker)
        return before.decode() if isinstance(before, bytes) else str(before)
    try:
        await _replace(redis, key_prefix, data)
    except BaseException:
        await redis.delete(marker)
        raise
    return None


async def _replace(redis: RedisClient, key_prefix: str, data: SeedData) -> None:
    inv, pay = keys.inventory(key_prefix), keys.payment(key_prefix)
    # One transaction per participant: each one's keys share its hash tag (one slot).
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(inv.catalogue, inv.stock)
        if data.catalogue:
            pipe.hset(
                inv.catalogue,
                mapping={
                    item.sku: orjson.dumps({"name": item.name, "unit_price": item.unit_price})
                    for item in data.catalogue
                },
            )
        if data.stock:
            stock: dict[Any, Any] = dict(data.stock)
            pipe.hset(inv.stock, mapping=stock)
        await pipe.execute()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(pay.balances)
        if data.balances:
            balances: dict[Any, Any] = dict(data.balances)
            pipe.hset(pay.balances, mapping=balances)
        await pipe.execute()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


async def read_catalogue(redis: RedisClient, key_prefix: str) -> tuple[CatalogueItem, ...]:
    raw = await redis.hgetall(keys.inventory(key_prefix).catalogue)
    items = []
    for sku, body in raw.items():
        value = orjson.loads(body)
        name = sku.decode() if isinstance(sku, bytes) else sku
        items.append(CatalogueItem(name, value["name"], int(value["unit_price"])))
    return tuple(sorted(items, key=lambda item: item.sku))


async def seed_demo(settings: Settings, data: SeedData = DEMO_SEED) -> SeedData:
    """`python -m participants seed`: loads `data` into the Redis and key prefix of `settings`."""
    redis = make_redis(settings)
    try:
        return await load_seed(redis, settings.saga_key_prefix, data)
    finally:
        await redis.aclose()


async def seed_demo_once(settings: Settings, data: SeedData = DEMO_SEED) -> str | None:
    """`python -m participants seed --once`: see `load_seed_once`."""
    redis = make_redis(settings)
    try:
        return await load_seed_once(redis, settings.saga_key_prefix, data)
    finally:
        await redis.aclose()
