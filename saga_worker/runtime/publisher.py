"""Sends what the store has persisted, and dead letters, on one idempotent producer.

Sends of a batch are handed to the producer together and awaited together, so
they share produce requests instead of paying a round trip each.

Nothing sent here may exceed `max_record_bytes` (the worker's SAGA_MAX_MESSAGE_BYTES,
its producer's max_request_size): the producer would refuse it for good, and the
worker would stop on it at every restart. Dead letters are cut to fit; an outbox
entry too large to send (saved by an older version, or before the limit was
lowered; the processor saves none) is logged and left out, and its saga's timeout
takes over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from saga_worker.runtime.dead_letters import DeadLetter, log_dead_letters
from saga_worker.runtime.store import OutboxEntry
from saga_worker.wire import MAX_BYTES, fit_dead_letter, record_size
from saga_worker.wire import topics as t
from saga_worker.wire.topics import Topics

log = logging.getLogger(__name__)


class Publisher:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        topics: Topics,
        worker: str,
        max_record_bytes: int = MAX_BYTES,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._worker = worker
        self._max_record_bytes = max_record_bytes

    async def send_entries(self, entries: Iterable[OutboxEntry]) -> None:
        """Returns once Kafka acknowledged every entry; raises if any send failed."""
        futures: list[asyncio.Future[Any]] = []
        for e in entries:
            value = orjson.dumps(e.payload)
            key = e.key.encode()
            headers = [(k, v.encode()) for k, v in e.headers]
            size = record_size(key, value, headers)
            if size > self._max_record_bytes:
                log.error(
                    "outbox entry too large to send; left out",
                    extra={
                        "saga_id": e.key,
                        "message_id": e.message_id,
                        "topic": e.topic,
                        "bytes": size,
                        "limit": self._max_record_bytes,
                    },
                )
                continue
            physical = self._topics.physical(e.topic)
            futures.append(await self._producer.send(physical, value, key=key, headers=headers))
        if futures:
            await asyncio.gather(*futures)

    async def send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        log_dead_letters(letters, self._worker)
        dlq = self._topics.physical(t.DEAD_LETTER)
        futures = []
        for letter in letters:
            key, value, headers = fit_dead_letter(
                letter.record.key,
                letter.record.value,
                letter.headers(self._worker),
                self._max_record_bytes,
            )
            futures.append(await self._producer.send(dlq, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)
