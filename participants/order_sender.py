"""Produces OrderCreated messages at a steady rate, as the outside world would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import orjson
from aiokafka import AIOKafkaProducer

from participants.order_mix import PlannedOrder
from saga_worker import Topics, make_headers, utcnow
from schemas import topics as t

TICK_S = 0.02


async def send_orders(
    producer: AIOKafkaProducer,
    topics: Topics,
    orders: Sequence[PlannedOrder],
    *,
    rate: float | None = None,
    on_progress: Callable[[int], None] = lambda sent: None,
) -> dict[str, datetime]:
    """Sends `orders` (at most `rate` per second when given), keyed by order id.

    Returns when Kafka acknowledged all of them, with each order's send time.
    """
    topic = topics.physical(t.ORDER_CREATED)
    sent_at: dict[str, datetime] = {}
    pending: list[asyncio.Future[object]] = []
    started = time.monotonic()
    for index, order in enumerate(orders):
        if rate:
            ahead = index / rate - (time.monotonic() - started)
            if ahead > TICK_S:
                await asyncio.sleep(ahead)
        sent_at[order.order_id] = utcnow()
        pending.append(
            await producer.send(
                topic,
                orjson.dumps(order.body),
                key=order.order_id.encode(),
                headers=make_headers(t.ORDER_CREATED, order.order_id),
            )
        )
        on_progress(index + 1)
    await asyncio.gather(*pending)
    return sent_at
