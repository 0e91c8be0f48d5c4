"""The `saga-worker` command line."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Protocol

import typer

from saga_worker.errors import ConfigurationError
from saga_worker.logs import configure_logging
from saga_worker.settings import Settings, load_settings

GC_THRESHOLD = 50_000  # allocations between young-generation collections (default 700)

app = typer.Typer(
    help="Saga orchestration on Apache Kafka with saga state in Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a worker's crash belongs in its log as plain text
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
    tune_gc()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())


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
    tune_gc()
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


@app.command()
def demo(
    orders: Annotated[int, typer.Option(help="how many orders to send", min=1)] = 300,
    rate: Annotated[float, typer.Option(help="orders per second", min=0.1)] = 150.0,
    fail_share: Annotated[
        float, typer.Option(help="share of orders planned to fail", min=0.0, max=1.0)
    ] = 0.2,
    hang_share: Annotated[
        float, typer.Option(help="share of sagas whose shipment never answers", min=0.0, max=1.0)
    ] = 0.03,
    timeout: Annotated[float, typer.Option(help="seconds to wait for every saga")] = 240.0,
    keep: Annotated[bool, typer.Option(help="leave the workers running afterwards")] = False,
    seed: Annotated[int, typer.Option(help="seed of the order mix")] = 2026,
) -> None:
    """Run the whole system on a few hundred orders and report what happened."""
    from rich.console import Console  # noqa: PLC0415

    from saga_worker.demo import DemoOptions, run_demo  # noqa: PLC0415

    settings = settings_or_exit()
    options = DemoOptions(orders, rate, fail_share, hang_share, seed, timeout, keep)
    raise typer.Exit(asyncio.run(run_demo(settings, options, Console())))


@app.command()
def orders(
    count: Annotated[int, typer.Option(help="how many OrderCreated messages", min=1)] = 100,
    rate: Annotated[float, typer.Option(help="orders per second; 0: as fast as possible")] = 50.0,
    fail_share: Annotated[
        float, typer.Option(help="share planned to fail (stock, card, address, funds)")
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="seed of the order mix")] = None,
    json: Annotated[bool, typer.Option("--json", help="print the orders sent as JSON")] = False,
) -> None:
    """Produce OrderCreated messages (against the demo catalogue; run `seed` first)."""
    import random  # noqa: PLC0415

    import orjson  # noqa: PLC0415
    from rich.progress import Progress  # noqa: PLC0415

    from saga_worker.kafka_clients import make_producer  # noqa: PLC0415
    from saga_worker.order_mix import Plan, plan_orders  # noqa: PLC0415
    from saga_worker.order_sender import send_orders  # noqa: PLC0415

    settings = settings_or_exit()
    if not 0 <= fail_share <= 1:
        typer.echo("error: --fail-share must be within 0..1", err=True)
        raise typer.Exit(2)
    planned = plan_orders(count, fail_share, random.Random(seed))  # noqa: S311 - not secrets

    async def produce() -> None:
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            with Progress(disable=json) as progress:
                task = progress.add_task("orders sent", total=count)
                await send_orders(
                    producer,
                    settings.topics,
                    planned,
                    rate=rate or None,
                    on_progress=lambda n: progress.update(task, completed=n),
                )
        finally:
            await producer.stop()

    asyncio.run(produce())
    if json:
        rows = [{"order_id": o.order_id, "plan": o.plan.value} for o in planned]
        typer.echo(orjson.dumps(rows).decode())
    else:
        failing = sum(o.plan is not Plan.COMPLETES for o in planned)
        typer.echo(f"sent {count} orders ({failing} planned to fail)")


@app.command(name="all")
def all_workers() -> None:
    """Run the orchestrator and the four participants in one process (development)."""
    from participants.knobs import Knobs  # noqa: PLC0415
    from participants.registry import build_participant  # noqa: PLC0415
    from participants.runtime import ParticipantWorker  # noqa: PLC0415
    from saga_worker.orchestrator import Orchestrator  # noqa: PLC0415
    from saga_worker.worker_processes import PARTICIPANT_NAMES  # noqa: PLC0415

    def make(settings: Settings) -> Stoppable:
        workers: list[Stoppable] = [Orchestrator(settings)]
        # One process, one port: the orchestrator serves health and metrics for all.
        quiet = settings.model_copy(update={"saga_health_port": 0})
        for name in PARTICIPANT_NAMES:
            participant = build_participant(name, os.environ)
            workers.append(ParticipantWorker(participant, quiet, Knobs.from_env(name, os.environ)))
        return Together(workers)

    run_worker(make)


class Together:
    """Several workers as one: stop stops all, run ends when all have ended."""

    def __init__(self, workers: list[Stoppable]) -> None:
        self._workers = workers

    def stop(self) -> None:
        for worker in self._workers:
            worker.stop()

    async def run(self) -> None:
        tasks = [asyncio.create_task(w.run()) for w in self._workers]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    # Operator commands (show, list, retry, abort, stats, dlq) register themselves on `app`.
    import saga_worker.cli_operator  # noqa: F401, PLC0415

    sys.exit(app())
