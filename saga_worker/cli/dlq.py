"""Dead letters for operators: read them back from the dead-letter topic, and replay them.

A dead letter is named by its position in the dead-letter topic, `PARTITION:OFFSET`.
Replaying sends its original key, value and headers back to the source topic,
with `dlq.replayed_from` (the letter's id) and `dlq.replays` (how often the
message has been sent back, this time included); a worker that dead-letters it
again keeps both on the new letter. The letter itself stays, a Kafka topic being
append-only: once it is back in its source topic, the replay appends a receipt
(`dlq.replay_of`, keyed by the letter's id, no value) to the letter's partition of
the dead-letter topic.

A letter counts as replayed when a receipt names it, or a later letter says it
was replayed from it (which also covers a replay that stopped between sending and
writing the receipt, if the message failed again). Replay skips replayed letters
unless forced, so replaying everything while the cause persists sends each failing
message once more, not every copy of it again. The receipts live in the dead-letter
topic rather than in a marker elsewhere (Redis) because they then live, expire and
are deleted with the letters they are about: a recreated topic, whose offsets
start again at 0, starts without stale ones.

Replay streams the topic, a fetched batch at a time: a first pass collects which
letters were replayed (their ids only), the second sends the selected letters.
Both stop at the end offsets seen when the replay started, so nothing it appends,
and no letter that fails meanwhile, is read back in the same run.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from saga_worker.runtime.kafka_admin import partitions_of, reader
from saga_worker.runtime.kafka_clients import KafkaConnection, make_producer
from saga_worker.wire import DeadLetterRecord, DecodeError, parse_dead_letter
from saga_worker.wire.dead_letter import (
    ReplayLineage,
    receipt_headers,
    receipt_of,
    replay_headers,
)

STALL_S = 30.0  # no record for this long while more are due: the broker is not answering

Spans: TypeAlias = dict[TopicPartition, tuple[int, int]]  # per partition, [start, stop)
Record: TypeAlias = "ConsumerRecord[bytes | None, bytes | None]"


class DeadLetterReadError(Exception):
    """The dead-letter topic could not be read to the end."""


@dataclass(frozen=True)
class Letter:
    """One dead letter; `record` is None if its `dlq.*` headers are broken."""

    partition: int
    offset: int
    timestamp_ms: int
    record: DeadLetterRecord | None
    problem: str | None = None
    lineage: ReplayLineage | None = None  # its message had been replayed: from where, how often
    replayed: int = 0  # how often it has been sent back since (as far as `read_letters` read)

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def replays(self) -> int:
        """How often its message had been sent back before it failed this time."""
        return self.lineage.replays if self.lineage else 0


@dataclass(frozen=True)
class Receipt:
    """A record of the dead-letter topic saying that the letter `letter_id` was sent back."""

    partition: int
    offset: int
    letter_id: str

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay: those with these ids and this error code (None: any)."""

    ids: frozenset[tuple[int, int]] | None = None
    code: str | None = None

    def names(self, entry: Letter | Receipt) -> bool:
        return self.ids is not None and (entry.partition, entry.offset) in self.ids

    def picks(self, letter: Letter) -> bool:
        if self.ids is not None and not self.names(letter):
            return False
        return self.code is None or (
            letter.record is not None and letter.record.error_code == self.code
        )


@dataclass(frozen=True)
class Send:
    """Send the letter's original `record` back to `topic`, as its message's
    `replays`-th replay."""

    topic: str
    replays: int
    record: DeadLetterRecord = field(compare=False, repr=False)


@dataclass(frozen=True)
class Skip:
    why: str
    replayed_before: bool = False  # the only reason --force overrides


ALREADY_REPLAYED = Skip("already replayed; --force sends it again", replayed_before=True)


@dataclass
class Replayed:
    sent: Counter[str] = field(default_factory=Counter)  # per source topic (dry run: would be)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # letter id, why
    already: list[str] = field(default_factory=list)  # ids of letters skipped as replayed before


def parse_letter_id(text: str) -> tuple[int, int]:
    """`PARTITION:OFFSET` as `dlq list` prints it."""
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ValueError(f"{text!r} is not a dead letter id like 0:42 (PARTITION:OFFSET)")
    return int(partition), int(offset)


def decide(
    letter: Letter, allowed_topics: Collection[str], replayed: Collection[str], *, force: bool
) -> Send | Skip:
    """Whether to send `letter` back, or why not. `replayed`: ids of letters sent back before."""
    record = letter.record
    if record is None:
        return Skip(f"unreadable dead letter: {letter.problem}")
    if record.original_size is not None:
        return Skip(
            f"its value was cut to fit the dead-letter topic ({record.original_size} bytes"
            " originally): the original is not there to send"
        )
    if record.source_topic not in allowed_topics:
        return Skip(f"{record.source_topic} is not a topic of this system")
    if not force and letter.id in replayed:
        return ALREADY_REPLAYED
    return Send(record.source_topic, letter.replays + 1, record)


async def read_letters(conn: KafkaConnection, topic: str, *, newest: int) -> list[Letter]:
    """The `newest` dead letters, oldest first, each with how often it was replayed since.

    Reads each partition backwards from its end, in windows, until it has `newest`
    letters or reaches the start: receipts take no place in the count, and every
    receipt of a letter read is read too (it follows the letter in its partition).
    """
    partitions = await partitions_of(conn, [topic])
    if not partitions:
        return []
    letters: list[Letter] = []
    sent_back: Counter[str] = Counter()  # letter id -> receipts naming it
    named: Counter[str] = Counter()  # letter id -> later letters replayed from it
    async with reader(conn) as consumer:
        first = await consumer.beginning_offsets(partitions)
        start = await consumer.end_offsets(partitions)
        wanted = {tp.partition: newest for tp in partitions}
        while spans := {
            tp: (max(first[tp], start[tp] - wanted[tp.partition]), start[tp])
            for tp in partitions
            if wanted[tp.partition] > 0 and start[tp] > first[tp]
        }:
            start.update({tp: span_start for tp, (span_start, _) in spans.items()})
            async for batch in _stream(consumer, spans):
                for entry in map(_entry, batch):
                    if isinstance(entry, Receipt):
                        sent_back[entry.letter_id] += 1
                        continue
                    letters.append(entry)
                    wanted[entry.partition] -= 1
                    if entry.lineage is not None:
                        named[entry.lineage.replayed_from] += 1
    letters.sort(key=lambda x: (x.timestamp_ms, x.partition, x.offset))
    return [replace(x, replayed=max(sent_back[x.id], named[x.id])) for x in letters[-newest:]]


async def replay(
    conn: KafkaConnection,
    topic: str,
    selection: Selection,
    allowed_topics: Collection[str],
    *,
    force: bool = False,
    dry_run: bool = False,
    on_send: Callable[[Letter, Send], None] | None = None,
) -> Replayed:
    """Sends the selected dead letters back to their source topics (those in
    `allowed_topics`), skipping letters replayed before unless `force`; `dry_run`
    sends nothing and writes no receipt. `on_send` hears of each letter (to be) sent."""
    result = Replayed()
    partitions = await partitions_of(conn, [topic])
    if not partitions:
        return result
    async with reader(conn) as consumer:
        first = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        whole: Spans = {tp: (first[tp], end[tp]) for tp in partitions if first[tp] < end[tp]}
        replayed = set() if force else await _replayed_ids(consumer, whole)
        producer = None if dry_run else make_producer(conn)
        if producer is not None:
            await producer.start()
        try:
            async for batch in _stream(consumer, _selected(whole, selection.ids)):
                sends: list[tuple[Letter, Send]] = []
                for entry in map(_entry, batch):
                    if isinstance(entry, Receipt):
                        if selection.names(entry):
                            why = f"a replay receipt (of {entry.letter_id}), not a dead letter"
                            result.skipped.append((entry.id, why))
                        continue
                    if not selection.picks(entry):
                        continue
                    decision = decide(entry, allowed_topics, replayed, force=force)
                    if isinstance(decision, Skip):
                        if decision.replayed_before:
                            result.already.append(entry.id)
                        else:
                            result.skipped.append((entry.id, decision.why))
                        continue
                    result.sent[decision.topic] += 1
                    sends.append((entry, decision))
                    if on_send is not None:
                        on_send(entry, decision)
                if producer is not None and sends:
                    await _send_back(producer, topic, sends)
        finally:
            if producer is not None:
                await producer.stop()
    return result


async def _send_back(
    producer: AIOKafkaProducer, topic: str, sends: Sequence[tuple[Letter, Send]]
) -> None:
    """Sends letters back, waits for Kafka to have them all, then writes their receipts."""
    futures = []
    for letter, send in sends:
        headers = replay_headers(send.record.headers, letter.id, send.replays)
        futures.append(
            await producer.send(send.topic, send.record.value, key=send.record.key, headers=headers)
        )
    await asyncio.gather(*futures)
    receipts = [
        await producer.send(
            topic,
            None,
            key=letter.id.encode(),
            partition=letter.partition,
            headers=receipt_headers(letter.id, send.replays),
        )
        for letter, send in sends
    ]
    await asyncio.gather(*receipts)


async def _replayed_ids(consumer: AIOKafkaConsumer, spans: Spans) -> set[str]:
    """Ids of the letters sent back before: named by a receipt or by a later letter."""
    ids: set[str] = set()
    async for batch in _stream(consumer, spans):
        for r in batch:
            headers = r.headers or ()
            letter_id = receipt_of(headers)
            lineage = ReplayLineage.of(headers)
            if letter_id is not None:
                ids.add(letter_id)
            elif lineage is not None:
                ids.add(lineage.replayed_from)
    return ids


def _selected(spans: Spans, ids: Collection[tuple[int, int]] | None) -> Spans:
    """The part of `spans` that holds the letters with these ids (None: all of it)."""
    if ids is None:
        return spans
    narrowed = {}
    for tp, (start, stop) in spans.items():
        offsets = [o for p, o in ids if p == tp.partition]
        if offsets:
            lo, hi = max(start, min(offsets)), min(stop, max(offsets) + 1)
            if lo < hi:
                narrowed[tp] = (lo, hi)
    return narrowed


async def _stream(consumer: AIOKafkaConsumer, spans: Spans) -> AsyncIterator[list[Record]]:
    """The records of the spans, a fetched batch at a time, each partition's in order."""
    if not spans:
        return
    consumer.assign(list(spans))
    for tp, (start, _) in spans.items():
        consumer.seek(tp, start)
    open_spans = dict(spans)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STALL_S
    while open_spans:
        batch = await consumer.getmany(*open_spans, timeout_ms=500)
        for tp, records in batch.items():
            deadline = loop.time() + STALL_S
            got = [r for r in records if r.offset < open_spans[tp][1]]
            if got:
                yield got
        for tp in [
            tp for tp, (_, stop) in open_spans.items() if await consumer.position(tp) >= stop
        ]:
            del open_spans[tp]
        if open_spans and loop.time() > deadline:
            raise DeadLetterReadError(
                f"no records from {sorted(map(str, open_spans))} in {STALL_S}s"
            )


def _entry(r: Record) -> Letter | Receipt:
    headers: Iterable[tuple[str, bytes]] = r.headers or ()
    letter_id = receipt_of(headers)
    if letter_id is not None:
        return Receipt(r.partition, r.offset, letter_id)
    lineage = ReplayLineage.of(headers)
    try:
        record = parse_dead_letter(r.value, r.key, headers)
    except DecodeError as exc:
        return Letter(r.partition, r.offset, r.timestamp, None, str(exc), lineage)
    return Letter(r.partition, r.offset, r.timestamp, record, lineage=lineage)
