"""The `saga-worker` command line."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from saga_worker._version import __version__
from saga_worker.app import App
from saga_worker.errors import ConfigurationError, SagaWorkerError
from saga_worker.observability.logs import configure_logging
from saga_worker.settings import Settings, load_settings

if TYPE_CHECKING:
    from saga_worker.runtime.run import Runnable

GC_THRESHOLD = 50_000  # allocations between young-generation collections (default 700)

app = typer.Typer(
    help="Saga orchestration on Apache Kafka with saga state in Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a worker's crash belongs in its log as plain text
)


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"saga-worker {__version__}")
        raise typer.Exit


@app.callback()
def common(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=show_version,
            is_eager=True,
            help="print the version and exit",
        ),
    ] = False,
) -> None:
    """Saga orchestration on Apache Kafka with saga state in Redis."""


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def load_app_or_exit(spec: str | None, settings: Settings) -> App:
    """The app named by --app, else by SAGA_APP; a bad name is one line and exit 2."""
    from saga_worker.loading import load_app  # noqa: PLC0415 - keep --help fast

    try:
        return load_app(spec or settings.saga_app)
    except ConfigurationError as exc:
        named = spec is not None or "saga_app" in settings.model_fields_set
        hint = "" if named else " (the default, the sample in saga-worker's repository)"
        usage = "" if named else "; name yours with --app module:object or SAGA_APP"
        typer.echo(f"error: {exc}{hint}{usage}", err=True)
        raise typer.Exit(2) from exc


AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="the app, as module:object (default: SAGA_APP, else the order-fulfillment sample)",
        show_default=False,
    ),
]


def run_worker(app_spec: str | None, make: Callable[[App, Settings], Runnable]) -> None:
    """Runs a worker of the app until SIGTERM or SIGINT, which drain its batch and exit 0."""
    from saga_worker.runtime.run import serve  # noqa: PLC0415

    settings = settings_or_exit()
    configure_logging(settings.saga_log_level)
    the_app = load_app_or_exit(app_spec, settings)
    try:
        worker = make(the_app, settings)
    except SagaWorkerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    tune_gc()
    try:
        asyncio.run(serve(worker))
    except ConfigurationError as exc:  # found at start, e.g. a limit the broker refuses
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def tune_gc() -> None:
    """Fewer cyclic collections for a long-running worker.

    A batch allocates many small, short-lived objects that reference counting
    frees; the default thresholds still ran the cyclic collector for 17% of the
    orchestrator's time under load (py-spy). What exists at start is frozen
    out of every later collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 50, 100)


@app.command()
def orchestrator(app_spec: AppOption = None) -> None:
    """Run the orchestrator: start each saga type of the app from its start topic."""
    from saga_worker.runtime.orchestrator import Orchestrator  # noqa: PLC0415 - keep --help fast

    run_worker(app_spec, lambda the_app, settings: Orchestrator(settings, the_app))


@app.command()
def participant(
    name: Annotated[str, typer.Argument(help="a participant the app declares")],
    app_spec: AppOption = None,
) -> None:
    """Run one participant worker of the app."""
    from saga_worker.runtime.run import participant_worker  # noqa: PLC0415

    run_worker(app_spec, lambda the_app, settings: participant_worker(the_app, name, settings))


@app.command(name="all")
def all_workers(app_spec: AppOption = None) -> None:
    """Run the orchestrator and every participant of the app in one process (development)."""
    from saga_worker.runtime.run import all_workers as together  # noqa: PLC0415

    run_worker(app_spec, together)


def main() -> None:
    # Operator commands (show, list, retry, abort, stats, dlq) and the console register
    # themselves on `app`.
    import saga_worker.cli.operator  # noqa: PLC0415
    import saga_worker.cli.web  # noqa: F401, PLC0415

    sys.exit(app())
