"""Operator commands of the `saga-worker` CLI: show, list, retry, abort, signal, stats, dlq.

Each command reads the same settings as the workers, prints for a person (or
JSON with --json), and on failure prints one line on stderr and exits 2 for bad
usage or settings, 1 when the saga is missing, the command is refused, or Kafka
or Redis cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from aiokafka.errors import KafkaError
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from saga_worker.app import App
from saga_worker.cli.commands import AppOption, app, load_app_or_exit, settings_or_exit
from saga_worker.cli.dlq import (
    ALREADY_REPLAYED,
    DeadLetterReadError,
    Letter,
    Replayed,
    Selection,
    Send,
    parse_letter_id,
    read_letters,
    replay,
)
from saga_worker.cli.operations import (
    Operations,
    consumer_groups,
    dead_letter_topic,
    replayable_topics,
)
from saga_worker.cli.views import (
    Family,
    family_view,
    letter_view,
    print_letters,
    print_page,
    print_saga,
    print_stats,
    saga_summary,
    saga_view,
)
from saga_worker.engine.state import SagaStatus
from saga_worker.errors import ConfigurationError, StoreUnavailableError, UnknownSagaTypeError
from saga_worker.runtime.dependencies import redis_permission_hint
from saga_worker.runtime.kafka_admin import GroupLag, consumer_lag
from saga_worker.runtime.kafka_checks import diagnose
from saga_worker.runtime.redis_client import make_redis
from saga_worker.settings import Settings

EXIT_FAILED = 1
EXIT_USAGE = 2

T = TypeVar("T")

dlq_app = typer.Typer(
    help="Dead letters: records a worker could not process.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON for machines")]
SagaArg = Annotated[
    str, typer.Argument(help="a saga id, or the business key that started it (an order id, ...)")
]


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
    return _run_with_app(None, lambda settings, _app: work(settings), needs_app=False)


def _run_with_app(
    app_spec: str | None,
    work: Callable[[Settings, App], Coroutine[Any, Any, T]],
    *,
    needs_app: bool = True,
) -> T:
    """`_run` for commands that need the app (loaded from --app or SAGA_APP)."""
    settings = settings_or_exit()
    the_app = load_app_or_exit(app_spec, settings) if needs_app else App()
    # aiokafka logs each failed connection; the one error line below says it once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(work(settings, the_app))
    except UnknownSagaTypeError as exc:
        fail(str(exc))
    except ConfigurationError as exc:
        fail(str(exc), EXIT_USAGE)
    except (RedisError, StoreUnavailableError) as exc:
        fail(_redis_line(exc), EXIT_USAGE if _redis_refused(exc) else EXIT_FAILED)
    except (KafkaError, DeadLetterReadError) as exc:
        fatal = asyncio.run(diagnose(settings.kafka))
        if fatal is not None:
            fail(str(fatal), EXIT_USAGE)
        fail(f"Kafka: {exc}")


def _causes(exc: BaseException) -> list[BaseException]:
    return [c for c in (exc, exc.__cause__, exc.__context__) if c is not None]


def _redis_forbidden(exc: BaseException) -> bool:
    return any(
        isinstance(c, NoPermissionError) or "NOPERM" in str(c) or "no permissions" in str(c)
        for c in _causes(exc)
    )


def _redis_refused(exc: BaseException) -> bool:
    """A refused login or a forbidden command: settings to fix, not a Redis away."""
    return _redis_forbidden(exc) or any(
        isinstance(c, AuthenticationError) or "WRONGPASS" in str(c) or "NOAUTH" in str(c)
        for c in _causes(exc)
    )


def _redis_line(exc: BaseException) -> str:
    text = str(exc).strip().removeprefix("redis: ")
    if _redis_forbidden(exc):
        return f"Redis: {redis_permission_hint(exc)}"
    if _redis_refused(exc):
        return f"Redis refused the login ({text}): check REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD"
    return f"Redis: {text}"


@asynccontextmanager
async def _operations(settings: Settings, the_app: App) -> AsyncIterator[Operations]:
    redis = make_redis(settings)
    try:
        yield Operations(settings, redis, the_app)
    finally:
        await redis.aclose()


def _print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())


# -- sagas ----------------------------------------------------------------------------


@app.command()
def show(saga: SagaArg, as_json: JsonFlag = False, app_spec: AppOption = None) -> None:
    """Show a saga: state, data, steps, and its history as a timeline."""

    async def work(settings: Settings, the_app: App) -> Any:
        async with _operations(settings, the_app) as ops:
            state = await ops.find(saga)
            if state is None:
                return None, None, the_app
            the_app.saga_type_of(state)
            definition = the_app.registry.get(state.definition_name, state.definition_version)
            parent = await ops.parent_of(state)
            family = Family(definition, parent, await ops.children_of(state))
            return state, family, the_app

    state, family, the_app = _run_with_app(app_spec, work)
    if state is None:
        fail(f"no saga with id or business key {saga!r}")
    if as_json:
        _print_json({**saga_view(state, the_app.business_key(state)), **family_view(state, family)})
    else:
        print_saga(state, the_app.business_key(state), family)


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
    saga_type: Annotated[
        str | None,
        typer.Option("--type", "-t", help="only sagas of this type, e.g. OrderFulfillment"),
    ] = None,
    as_json: JsonFlag = False,
    app_spec: AppOption = None,
) -> None:
    """List sagas, most recently updated first; every state unless --state is given."""
    statuses = _statuses_or_exit(state)
    older = _duration_or_exit("--older-than", older_than)
    newer = _duration_or_exit("--newer-than", newer_than)
    _at_least("--limit", limit, 1)
    _at_least("--offset", offset, 0)

    async def work(settings: Settings, the_app: App) -> Any:
        if saga_type is not None:
            the_app.saga_type(saga_type)
        async with _operations(settings, the_app) as ops:
            page = await ops.list(
                statuses,
                older_than=older,
                newer_than=newer,
                offset=offset,
                limit=limit,
                saga_type=saga_type,
            )
            return page, ops.now(), the_app

    page, now, the_app = _run_with_app(app_spec, work)
    if as_json:
        sagas = [saga_summary(s, now, the_app.business_key(s)) for s in page.sagas]
        _print_json({"sagas": sagas, "next_offset": page.next_offset})
    else:
        print_page(page, now, the_app.business_key)


@app.command()
def retry(saga: SagaArg, app_spec: AppOption = None) -> None:
    """Resume a saga that needs an operator: its stuck steps get a fresh retry budget."""
    _operator_command(app_spec, saga, lambda ops: ops.retry(saga), "resumed")


@app.command()
def abort(
    saga: SagaArg,
    reason: Annotated[str, typer.Option(help="why, recorded in the saga")] = "aborted by operator",
    app_spec: AppOption = None,
) -> None:
    """Compensate a running saga on purpose (refused once its pivot step succeeded)."""
    _operator_command(app_spec, saga, lambda ops: ops.abort(saga, reason), "aborted")


@app.command()
def signal(
    saga: SagaArg,
    name: Annotated[str, typer.Argument(help="the wait step to deliver to, e.g. approval")],
    data: Annotated[str, typer.Option(help="the event's body, a JSON object")] = "{}",
    app_spec: AppOption = None,
) -> None:
    """Deliver an event to a saga's wait step, as if it had arrived on its topic."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        fail(f"--data is not JSON: {exc}", EXIT_USAGE)
    if not isinstance(body, dict):
        fail("--data must be a JSON object", EXIT_USAGE)
    _operator_command(app_spec, saga, lambda ops: ops.signal(saga, name, body), "signalled")


def _operator_command(
    app_spec: str | None, saga: str, command: Callable[[Operations], Awaitable[Any]], done: str
) -> None:
    async def work(settings: Settings, the_app: App) -> Any:
        async with _operations(settings, the_app) as ops:
            return await command(ops)

    outcome = _run_with_app(app_spec, work)
    if outcome.state is None:
        fail(f"no saga with id or business key {saga!r}")
    if not outcome.changed:
        fail(f"refused: {outcome.reason}")
    typer.echo(f"{done} saga {outcome.state.saga_id}: now {outcome.state.status.value}")


# -- the system -----------------------------------------------------------------------


@app.command()
def stats(as_json: JsonFlag = False, app_spec: AppOption = None) -> None:
    """Sagas by state, completions in the last minute, outbox and timer backlog, and the
    consumer lag of the app's own groups."""

    async def work(settings: Settings, the_app: App) -> dict[str, Any]:
        async with _operations(settings, the_app) as ops:
            counts = await ops.counts()
            backlog = await ops.backlog()
        lags = await consumer_lag(settings.kafka, consumer_groups(settings, the_app))
        return {"sagas": counts, "backlog": backlog, "lag": [asdict(g) for g in lags]}

    report = _run_with_app(app_spec, work)
    if as_json:
        _print_json(report)
    else:
        print_stats(report["sagas"], report["backlog"], [GroupLag(**g) for g in report["lag"]])


# -- dead letters ---------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="the newest this many")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List the newest dead letters: where they came from, why, and a preview of the value."""
    _at_least("--limit", limit, 1)

    async def work(settings: Settings) -> list[Letter]:
        return await read_letters(settings.kafka, dead_letter_topic(settings), newest=limit)

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
    force: Annotated[
        bool, typer.Option("--force", help="also dead letters that were replayed before")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would be sent; send nothing")
    ] = False,
    app_spec: AppOption = None,
) -> None:
    """Send dead letters' original bytes and headers back to their source topics, marked
    `dlq.replayed_from` and `dlq.replays`; skips letters replayed before unless --force."""
    ids = _letter_ids_or_exit(offset)
    if ids is None and not replay_all and code is None:
        fail("say which: --offset PARTITION:OFFSET, --code CODE or --all", EXIT_USAGE)
    selection = Selection(None if ids is None else frozenset(ids), code)

    def listed(letter: Letter, send: Send) -> None:
        typer.echo(f"would replay {letter.id} to {send.topic} (replay {send.replays})")

    async def work(settings: Settings, the_app: App) -> Replayed:
        return await replay(
            settings.kafka,
            dead_letter_topic(settings),
            selection,
            replayable_topics(settings, the_app),
            force=force,
            dry_run=dry_run,
            on_send=listed if dry_run else None,
        )

    result = _run_with_app(app_spec, work)
    for letter_id, why in result.skipped:
        typer.echo(f"skipped {letter_id}: {why}", err=True)
    if ids is not None:
        for letter_id in result.already:
            typer.echo(f"skipped {letter_id}: {ALREADY_REPLAYED.why}", err=True)
    elif result.already:
        many = len(result.already)
        typer.echo(
            f"skipped {many} dead letters replayed before; --force sends them again", err=True
        )
    sent = result.sent.total()
    topics = ", ".join(f"{n} to {topic}" for topic, n in sorted(result.sent.items()))
    verb = "would replay" if dry_run else "replayed"
    typer.echo(f"{verb} {sent} dead letters" + (f" ({topics})" if topics else ""))
    if ids is not None and sent < len(ids):
        fail(f"{len(ids) - sent} of the given dead letters were not replayed")


def _letter_ids_or_exit(texts: list[str] | None) -> set[tuple[int, int]] | None:
    if not texts:
        return None
    try:
        return {parse_letter_id(x) for x in texts}
    except ValueError as exc:
        fail(f"--offset: {exc}", EXIT_USAGE)
