"""Dead letters for operators: read them back from the dead-letter topic, and replay them.

A dead letter is named by its position in the dead-letter topic,
`PARTITION:OFFSET`. Replaying sends the original key, value and headers (minus
`dlq.*`) back to the source topic; the dead letter itself stays, since a Kafka
topic is append-only, so replaying the same one twice sends it twice (the
workers' idempotency makes a repeated saga message harmless).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from saga_worker.runtime.kafka_admin import partitions_of, reader
from saga_worker.runtime.kafka_clients import KafkaConnection, make_producer
from saga_worker.wire import DeadLetterRecord, DecodeError, parse_dead_letter
from saga_worker.wire.dead_letter import DLQ_PREFIX

STALL_S = 30.0  # no record for this long while more are due: the broker is not answering


class DeadLetterReadError(Exception):
    """The dead-letter topic could not be read to the end."""


@dataclass(frozen=True)
class Letter:
    """One record of the dead-letter topic; `record` is None if its `dlq.*` headers are broken."""

    partition: int
    offset: int
    timestamp_ms: int
    record: DeadLetterRecord | None
    problem: str | None = None

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Replayed:
    sent: Counter[str]  # per source topic
    skipped: list[tuple[Letter, str]]  # and why


def parse_letter_id(text: str) -> tuple[int, int]:
    """`PARTITION:OFFSET` as `dlq list` prints it."""
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ValueError(f"{text!r} is not a dead letter id like 0:42 (PARTITION:OFFSET)")
    return int(partition), int(offset)


async def read_letters(
    conn: KafkaConnection,
    topic: str,
    *,
    newest: int | None = None,
    ids: Collection[tuple[int, int]] | None = None,
) -> list[Letter]:
    """Dead letters oldest first: all of them, the `newest` N, or those with the given ids."""
    partitions = await partitions_of(conn, [topic])
    if ids is not None:
        partitions = [tp for tp in partitions if any(p == tp.partition for p, _ in ids)]
    if not partitions:
        return []
    async with reader(conn) as consumer:
        spans = await _spans(consumer, partitions, newest, ids)
        records = await _read_spans(consumer, spans)
    letters = [_letter(r) for r in records]
    if ids is not None:
        wanted = set(ids)
        letters = [x for x in letters if (x.partition, x.offset) in wanted]
    letters.sort(key=lambda x: (x.timestamp_ms, x.partition, x.offset))
    return letters[-newest:] if newest else letters


async def replay(
    conn: KafkaConnection, letters: Iterable[Letter], allowed_topics: Collection[str]
) -> Replayed:
    """Sends each letter's original bytes back to its source topic, if it is one of ours."""
    sent: Counter[str] = Counter()
    skipped: list[tuple[Letter, str]] = []
    producer = make_producer(conn)
    await producer.start()
    try:
        futures = []
        for letter in letters:
            record = letter.record
            if record is None:
                skipped.append((letter, f"unreadable dead letter: {letter.problem}"))
                continue
            if record.source_topic not in allowed_topics:
                skipped.append((letter, f"{record.source_topic} is not a topic of this system"))
                continue
            headers = [(k, v or b"") for k, v in record.headers if not k.startswith(DLQ_PREFIX)]
            futures.append(
                await producer.send(
                    record.source_topic, record.value, key=record.key, headers=headers
                )
            )
            sent[record.source_topic] += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return Replayed(sent, skipped)


async def _spans(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    newest: int | None,
    ids: Collection[tuple[int, int]] | None,
) -> dict[TopicPartition, tuple[int, int]]:
    """The offsets [start, stop) to read per partition; empty spans are left out."""
    first = await consumer.beginning_offsets(partitions)
    end = await consumer.end_offsets(partitions)
    spans = {}
    for tp in partitions:
        start, stop = first[tp], end[tp]
        if newest:
            start = max(start, stop - newest)
        if ids is not None:
            offsets = [o for p, o in ids if p == tp.partition]
            start, stop = max(start, min(offsets)), min(stop, max(offsets) + 1)
        if start < stop:
            spans[tp] = (start, stop)
    return spans


async def _read_spans(
    consumer: AIOKafkaConsumer, spans: dict[TopicPartition, tuple[int, int]]
) -> list[ConsumerRecord[bytes | None, bytes | None]]:
    consumer.assign(list(spans))
    for tp, (start, _) in spans.items():
        consumer.seek(tp, start)
    open_spans = dict(spans)
    got = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STALL_S
    while open_spans:
        batch = await consumer.getmany(*open_spans, timeout_ms=500)
        for tp, records in batch.items():
            got += [r for r in records if r.offset < open_spans[tp][1]]
            deadline = loop.time() + STALL_S
        for tp in [
            tp for tp, (_, stop) in open_spans.items() if await consumer.position(tp) >= stop
        ]:
            del open_spans[tp]
        if open_spans and loop.time() > deadline:
            raise DeadLetterReadError(
                f"no records from {sorted(map(str, open_spans))} in {STALL_S}s"
            )
    return got


def _letter(r: ConsumerRecord[bytes | None, bytes | None]) -> Letter:
    try:
        record = parse_dead_letter(r.value, r.key, r.headers or ())
    except DecodeError as exc:
        return Letter(r.partition, r.offset, r.timestamp, None, str(exc))
    return Letter(r.partition, r.offset, r.timestamp, record)
