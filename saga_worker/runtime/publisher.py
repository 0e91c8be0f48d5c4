"""Sends what the store has persisted, and dead letters, on one idempotent producer.

Sends of a batch are handed to the producer together and awaited together, so
they share produce requests instead of paying a round trip each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import orjson
from aiokafka import AIOKafkaProducer

from saga_worker.runtime.dead_letters import DeadLetter, log_dead_letters
from saga_worker.runtime.store import OutboxEntry
from saga_worker.wire import topics as t
from saga_worker.wire.topics import Topics


class Publisher:
    def __init__(self, producer: AIOKafkaProducer, topics: Topics, worker: str) -> None:
        self._producer = producer
        self._topics = topics
        self._worker = worker

    async def send_entries(self, entries: Iterable[OutboxEntry]) -> None:
        """Returns once Kafka acknowledged every entry; raises if any send failed."""
        futures = [
            await self._producer.send(
                self._topics.physical(e.topic),
                value=orjson.dumps(e.payload),
                key=e.key.encode(),
                headers=[(k, v.encode()) for k, v in e.headers],
            )
            for e in entries
        ]
        if futures:
            await asyncio.gather(*futures)

    async def send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        log_dead_letters(letters, self._worker)
        dlq = self._topics.physical(t.DEAD_LETTER)
        futures = [
            await self._producer.send(
                dlq,
                value=letter.record.value,
                key=letter.record.key,
                headers=letter.headers(self._worker),
            )
            for letter in letters
        ]
        await asyncio.gather(*futures)
