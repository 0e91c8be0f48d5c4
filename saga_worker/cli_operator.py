"""Operator commands of the `saga-worker` CLI: show, list, retry, abort, stats, dlq.

Each command reads the same settings as the workers, prints for a person (or
JSON with --json), and on failure prints one line on stderr and exits 2 for bad
usage or settings, 1 when the saga is missing, the command is refused, or Kafka
or Redis cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from saga_worker.cli import app, settings_or_exit
from saga_worker.dlq import DeadLetterReadError, Letter, parse_letter_id, read_letters, replay
from saga_worker.kafka_admin import GroupLag, consumer_lag
from saga_worker.operations import Operations
from saga_worker.operator_views import (
    letter_view,
    print_letters,
    print_page,
    print_saga,
    print_stats,
    saga_summary,
    saga_view,
)
from saga_worker.settings import Settings
from saga_worker.state import SagaStatus
from schemas import topics as t

EXIT_FAILED = 1
EXIT_USAGE = 2

T = TypeVar("T")

dlq_app = typer.Typer(
    help="Dead letters: records a worker could not process.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON for machines")]
SagaArg = Annotated[str, typer.Argument(help="a saga id, or the id of the order that started it")]


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`30s`, `10m`, `2h`, `1d`: a positive number and one unit."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 10m, 2h or 1d")
    return timedelta(seconds=float(match[1]) * _UNIT_S[match[2]])


def _duration_or_exit(option: str, text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        fail(f"{option}: {exc}", EXIT_USAGE)


def _statuses_or_exit(names: list[str] | None) -> list[SagaStatus]:
    if not names:
        return list(SagaStatus)
    known = {s.value: s for s in SagaStatus}
    unknown = [n for n in names if n not in known]
    if unknown:
        fail(f"--state: unknown state {unknown[0]!r}; one of {', '.join(known)}", EXIT_USAGE)
    return [known[n] for n in names]


def _at_least(option: str, value: int, least: int) -> int:
    if value < least:
        fail(f"{option} must be at least {least}, got {value}", EXIT_USAGE)
    return value


def _run(work: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Runs one command's I/O; an unreachable Kafka or Redis is one line and exit 1."""
    settings = settings_or_exit()
    # aiokafka logs each failed connection; the one error line below says it once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(work(settings))
    except RedisError as exc:
        fail(f"Redis: {exc}")
    except (KafkaError, DeadLetterReadError) as exc:
        fail(f"Kafka: {exc}")


@asynccontextmanager
async def _operations(settings: Settings) -> AsyncIterator[Operations]:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        yield Operations(settings, redis)
    finally:
        await redis.aclose()


def _print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())


# -- sagas ----------------------------------------------------------------------------


@app.command()
def show(saga: SagaArg, as_json: JsonFlag = False) -> None:
    """Show a saga: state, data, steps, and its history as a timeline."""

    async def work(settings: Settings) -> Any:
        async with _operations(settings) as ops:
            return await ops.find(saga)

    state = _run(work)
    if state is None:
        fail(f"no saga with id or order id {saga!r}")
    if as_json:
        _print_json(saga_view(state))
    else:
        print_saga(state)


@app.command("list")
def list_sagas(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            "-s",
            help=f"only sagas in this state (repeatable): {', '.join(SagaStatus)}",
        ),
    ] = None,
    older_than: Annotated[
        str | None, typer.Option(help="last updated longer ago than this, e.g. 10m")
    ] = None,
    newer_than: Annotated[
        str | None, typer.Option(help="last updated more recently than this, e.g. 1h")
    ] = None,
    limit: Annotated[int, typer.Option(help="most sagas to print")] = 20,
    offset: Annotated[int, typer.Option(help="skip this many (from a previous page)")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List sagas, most recently updated first; every state unless --state is given."""
    statuses = _statuses_or_exit(state)
    older = _duration_or_exit("--older-than", older_than)
    newer = _duration_or_exit("--newer-than", newer_than)
    _at_least("--limit", limit, 1)
    _at_least("--offset", offset, 0)

    async def work(settings: Settings) -> Any:
        async with _operations(settings) as ops:
            page = await ops.list(
                statuses, older_than=older, newer_than=newer, offset=offset, limit=limit
            )
            return page, ops.now()

    page, now = _run(work)
    if as_json:
        sagas = [saga_summary(s, now) for s in page.sagas]
        _print_json({"sagas": sagas, "next_offset": page.next_offset})
    else:
        print_page(page, now)


@app.command()
def retry(saga: SagaArg) -> None:
    """Resume a saga that needs an operator: its stuck steps get a fresh retry budget."""
    _operator_command(saga, lambda ops: ops.retry(saga), "resumed")


@app.command()
def abort(
    saga: SagaArg,
    reason: Annotated[str, typer.Option(help="why, recorded in the saga")] = "aborted by operator",
) -> None:
    """Compensate a running saga on purpose (refused once its pivot step succeeded)."""
    _operator_command(saga, lambda ops: ops.abort(saga, reason), "aborted")


def _operator_command(
    saga: str, command: Callable[[Operations], Awaitable[Any]], done: str
) -> None:
    async def work(settings: Settings) -> Any:
        async with _operations(settings) as ops:
            return await command(ops)

    outcome = _run(work)
    if outcome.state is None:
        fail(f"no saga with id or order id {saga!r}")
    if not outcome.changed:
        fail(f"refused: {outcome.reason}")
    typer.echo(f"{done} saga {outcome.state.saga_id}: now {outcome.state.status.value}")


# -- the system -----------------------------------------------------------------------


@app.command()
def stats(as_json: JsonFlag = False) -> None:
    """Sagas by state, completions in the last minute, outbox and timer backlog, consumer lag."""

    async def work(settings: Settings) -> dict[str, Any]:
        async with _operations(settings) as ops:
            counts = await ops.counts()
            backlog = await ops.backlog()
        lags = await consumer_lag(settings.kafka, _consumer_groups(settings))
        return {"sagas": counts, "backlog": backlog, "lag": [asdict(g) for g in lags]}

    report = _run(work)
    if as_json:
        _print_json(report)
    else:
        print_stats(report["sagas"], report["backlog"], [GroupLag(**g) for g in report["lag"]])


def _consumer_groups(settings: Settings) -> Mapping[str, list[str]]:
    """Every worker's consumer group and the physical topics it reads."""
    from participants.registry import NAMES, build_participant  # noqa: PLC0415 - keep --help fast
    from saga_worker.inbound import INBOUND_TOPICS  # noqa: PLC0415

    physical = settings.topics.physical
    groups = {settings.group_id("orchestrator"): [physical(n) for n in INBOUND_TOPICS]}
    for name in NAMES:
        participant = build_participant(name, os.environ)
        groups[settings.group_id(f"participant.{name}")] = [physical(n) for n in participant.topics]
    return groups


# -- dead letters ---------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="the newest this many")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List the newest dead letters: where they came from, why, and a preview of the value."""
    _at_least("--limit", limit, 1)

    async def work(settings: Settings) -> list[Letter]:
        return await read_letters(settings.kafka, _dlq_topic(settings), newest=limit)

    letters = _run(work)
    if as_json:
        _print_json([letter_view(x) for x in letters])
    else:
        print_letters(letters)


@dlq_app.command("replay")
def dlq_replay(
    offset: Annotated[
        list[str] | None,
        typer.Option(help="a dead letter's id PARTITION:OFFSET, as `dlq list` prints it"),
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
    code: Annotated[str | None, typer.Option(help="only dead letters with this error code")] = None,
) -> None:
    """Send dead letters' original bytes and headers back to their source topics."""
    ids = _letter_ids_or_exit(offset)
    if ids is None and not replay_all and code is None:
        fail("say which: --offset PARTITION:OFFSET, --code CODE or --all", EXIT_USAGE)

    async def work(settings: Settings) -> Any:
        letters = await read_letters(settings.kafka, _dlq_topic(settings), ids=ids)
        if code is not None:
            letters = [x for x in letters if x.record and x.record.error_code == code]
        ours = {settings.topics.physical(n) for n in t.ALL_TOPICS if n != t.DEAD_LETTER}
        return await replay(settings.kafka, letters, ours)

    result = _run(work)
    for letter, why in result.skipped:
        typer.echo(f"skipped {letter.id}: {why}", err=True)
    topics = ", ".join(f"{n} to {topic}" for topic, n in sorted(result.sent.items()))
    typer.echo(f"replayed {result.sent.total()} dead letters" + (f" ({topics})" if topics else ""))
    if ids is not None and result.sent.total() < len(ids):
        fail(f"{len(ids) - result.sent.total()} of the given dead letters were not replayed")


def _letter_ids_or_exit(texts: list[str] | None) -> set[tuple[int, int]] | None:
    if not texts:
        return None
    try:
        return {parse_letter_id(x) for x in texts}
    except ValueError as exc:
        fail(f"--offset: {exc}", EXIT_USAGE)


def _dlq_topic(settings: Settings) -> str:
    return settings.topics.physical(t.DEAD_LETTER)
