"""The outside world under load: sends OrderCreated and watches the outcome topics.

Three shapes of load, all timed on the wall clock (`time.time()`, the clock
`send_orders` stamps with):
- closed loop: keep N sagas in flight, a new order for every outcome received;
- idle: one saga at a time;
- open loop: a fixed rate, whatever the system does (`send_orders`).
A saga's latency runs from its OrderCreated handed to the producer to its
outcome read back by the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from participants.order_mix import PlannedOrder, plan_orders
from participants.order_sender import send_orders
from participants.seed import SeedData
from saga_worker.runtime.kafka_clients import make_producer
from saga_worker.settings import Settings
from saga_worker.wire import make_headers
from schemas import topics as t

ORDER_CHUNK = 1000
SEND_BACKLOG = 5000  # unacknowledged sends checked for errors beyond this many


@dataclass
class Observed:
    """What one load phase saw: send and outcome times by order id."""

    expected: set[str] = field(default_factory=set)  # order ids sent in this phase
    sent: dict[str, float] = field(default_factory=dict)
    completed: dict[str, float] = field(default_factory=dict)
    failed: dict[str, float] = field(default_factory=dict)

    def latencies(self) -> list[float]:
        return [at - self.sent[o] for o, at in self.completed.items() if o in self.sent]

    def completion_times(self) -> list[float]:
        return list(self.completed.values())


class OrderStream:
    """Happy-path orders planned lazily, so a long run does not hold them all at once."""

    def __init__(self, seed: SeedData, rng_seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(rng_seed)  # noqa: S311 - a reproducible order mix
        self._chunk: Iterator[PlannedOrder] = iter(())

    def take(self, count: int) -> list[PlannedOrder]:
        return [self.next() for _ in range(count)]

    def next(self) -> PlannedOrder:
        order = next(self._chunk, None)
        if order is None:
            self._chunk = iter(plan_orders(ORDER_CHUNK, 0.0, self._rng, self._seed))
            order = next(self._chunk)
        return order


class Driver:
    def __init__(self, settings: Settings, orders: OrderStream) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._orders = orders
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._watch: asyncio.Task[None] | None = None
        self._phase = Observed()
        self._outcomes = 0
        self._arrived = asyncio.Event()
        self._unacked: list[asyncio.Future[object]] = []

    async def __aenter__(self) -> Driver:
        conn = self._settings.kafka
        self._producer = make_producer(conn)
        # No group: the watcher reads every partition from the start of fresh topics.
        self._consumer = AIOKafkaConsumer(**conn.options(), group_id=None, enable_auto_commit=False)
        try:
            await self._producer.start()
            await self._consumer.start()
            await self._consumer.topics()  # fresh leaders, or offset lookups log errors
            parts = [
                TopicPartition(self._topics.physical(name), p)
                for name in t.OUTCOME_TOPICS
                for p in range(self._settings.saga_partitions)
            ]
            self._consumer.assign(parts)
            await self._consumer.seek_to_beginning(*parts)
        except BaseException:
            await self.__aexit__()
            raise
        self._watch = asyncio.create_task(self._read_outcomes(), name="outcomes")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()

    # -- load shapes -------------------------------------------------------------------

    async def closed_loop(self, in_flight: int, duration_s: float) -> Observed:
        """Keeps `in_flight` sagas running for `duration_s`; returns when the time is up."""
        phase = self._begin()
        for _ in range(in_flight):
            await self._send(self._orders.next())
        seen = self._outcomes
        deadline = time.time() + duration_s
        while time.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), deadline - time.time())
            self._arrived.clear()
            fresh, seen = self._outcomes - seen, self._outcomes
            for _ in range(fresh):
                await self._send(self._orders.next())
        await self._flush()
        return phase

    async def idle(self, count: int, timeout_s: float) -> Observed:
        """`count` sagas one after the other, each sent once the previous one ended."""
        phase = self._begin()
        for _ in range(count):
            await self._send(self._orders.next())
            await self._flush()
            await self.drain(timeout_s)
        return phase

    async def open_loop(self, rate: float, duration_s: float) -> Observed:
        """Sends at `rate` per second for `duration_s`, whatever the system keeps up with."""
        assert self._producer is not None
        phase = self._begin()
        orders = self._orders.take(round(rate * duration_s))
        # Expected before the sends, so outcomes arriving meanwhile are kept.
        phase.expected.update(o.order_id for o in orders)
        sent_at = await send_orders(self._producer, self._topics, orders, rate=rate)
        phase.sent.update({o: at.timestamp() for o, at in sent_at.items()})
        return phase

    async def drain(self, timeout_s: float) -> bool:
        """Waits until every saga sent in this phase has an outcome, or the time is up."""
        phase = self._phase
        deadline = time.time() + timeout_s
        while len(phase.completed) + len(phase.failed) < len(phase.expected):
            if time.time() >= deadline:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), deadline - time.time())
            self._arrived.clear()
        return True

    # -- plumbing ----------------------------------------------------------------------

    def _begin(self) -> Observed:
        self._phase = Observed()
        return self._phase

    async def _send(self, order: PlannedOrder) -> None:
        assert self._producer is not None
        topic = self._topics.physical(t.ORDER_CREATED)
        self._phase.expected.add(order.order_id)
        self._phase.sent[order.order_id] = time.time()
        self._unacked.append(
            await self._producer.send(
                topic,
                orjson.dumps(order.body),
                key=order.order_id.encode(),
                headers=make_headers(t.ORDER_CREATED, order.order_id),
            )
        )
        if len(self._unacked) > SEND_BACKLOG:
            done = [f for f in self._unacked if f.done()]
            self._unacked = [f for f in self._unacked if not f.done()]
            for fut in done:
                fut.result()  # raises a failed send here rather than never

    async def _flush(self) -> None:
        pending, self._unacked = self._unacked, []
        await asyncio.gather(*pending)

    async def _read_outcomes(self) -> None:
        assert self._consumer is not None
        completed = self._topics.physical(t.FULFILLMENT_COMPLETED)
        while True:
            batch = await self._consumer.getmany(timeout_ms=1000)
            now = time.time()
            phase = self._phase
            for records in batch.values():
                for record in records:
                    order_id = str(orjson.loads(record.value or b"{}").get("order_id"))
                    if order_id not in phase.expected:
                        continue  # a straggler of an earlier phase
                    ended = phase.completed if record.topic == completed else phase.failed
                    ended.setdefault(order_id, now)
                    self._outcomes += 1
            if batch:
                self._arrived.set()
