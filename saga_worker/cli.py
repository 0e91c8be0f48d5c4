"""The `saga-worker` command line."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Protocol

import typer

from saga_worker.errors import ConfigurationError
from saga_worker.logs import configure_logging
from saga_worker.settings import Settings, load_settings

app = typer.Typer(
    help="Saga orchestration on Apache Kafka with saga state in Redis.",
    no_args_is_help=True,
    add_completion=False,
)


class Stoppable(Protocol):
    def stop(self) -> None: ...

    async def run(self) -> None: ...


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def run_worker(make: Callable[[Settings], Stoppable]) -> None:
    """Runs a worker until SIGTERM or SIGINT, which drain its batch and exit 0."""
    settings = settings_or_exit()
    configure_logging()
    worker = make(settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())


@app.command()
def orchestrator() -> None:
    """Run the orchestrator: start sagas from OrderCreated, drive them to an end."""
    from saga_worker.orchestrator import Orchestrator  # noqa: PLC0415 - keep --help fast

    run_worker(Orchestrator)


@app.command()
def participant(
    name: Annotated[str, typer.Argument(help="inventory, payment, shipping or notification")],
) -> None:
    """Run one sample participant worker."""
    from participants.errors import ParticipantError  # noqa: PLC0415
    from participants.main import run_participant  # noqa: PLC0415

    settings = settings_or_exit()
    configure_logging()
    try:
        asyncio.run(run_participant(name, settings))
    except ParticipantError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def seed() -> None:
    """Load the demo catalogue, stock and customer balances into the participants' Redis."""
    from participants.seed import seed_demo  # noqa: PLC0415

    loaded = asyncio.run(seed_demo(settings_or_exit()))
    typer.echo(f"seeded {len(loaded.stock)} SKUs and {len(loaded.balances)} customers")


@app.command()
def schemas(
    folder: Annotated[Path, typer.Argument(help="where to write the JSON Schemas")] = Path(
        "schemas/json"
    ),
) -> None:
    """Write the JSON Schema of every wire message to FOLDER."""
    from schemas.export import write_json_schemas  # noqa: PLC0415

    for path in write_json_schemas(folder):
        typer.echo(str(path))


def main() -> None:
    # Operator commands (show, list, retry, abort, stats, dlq) register themselves on `app`.
    import saga_worker.cli_operator  # noqa: F401, PLC0415

    sys.exit(app())
