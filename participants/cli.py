"""The sample's own commands: `python -m participants seed|orders|demo`.

They know the order-fulfillment sample (its catalogue, its orders, its
conservation checks); the operator commands of `saga-worker` work for any app.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from saga_worker import ConfigurationError, Settings, load_settings

app = typer.Typer(
    help="The order-fulfillment sample: seed data, orders and the demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def seed(
    once: Annotated[
        bool, typer.Option(help="leave the data alone if it was loaded before (at every start)")
    ] = False,
) -> None:
    """Load the demo catalogue, stock and customer balances into the participants' Redis."""
    from participants.seed import DEMO_SEED, seed_demo, seed_demo_once  # noqa: PLC0415

    settings = settings_or_exit()
    if once:
        before = asyncio.run(seed_demo_once(settings))
        if before is not None:
            typer.echo(f"already seeded at {before}; left as it is")
            return
    else:
        asyncio.run(seed_demo(settings))
    typer.echo(f"seeded {len(DEMO_SEED.stock)} SKUs and {len(DEMO_SEED.balances)} customers")


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
    large_share: Annotated[
        float, typer.Option(help="share of large orders, which wait for a manager's approval")
    ] = 0.1,
) -> None:
    """Run the whole system on a few hundred orders and report what happened."""
    from rich.console import Console  # noqa: PLC0415

    from participants.demo import DemoOptions, run_demo  # noqa: PLC0415

    settings = settings_or_exit()
    options = DemoOptions(
        orders, rate, fail_share, hang_share, seed, timeout, keep, large_share=large_share
    )
    raise typer.Exit(asyncio.run(run_demo(settings, options, Console())))


@app.command()
def orders(
    count: Annotated[int, typer.Option(help="how many OrderCreated messages", min=1)] = 100,
    rate: Annotated[float, typer.Option(help="orders per second; 0: as fast as possible")] = 50.0,
    fail_share: Annotated[
        float, typer.Option(help="share planned to fail (stock, card, address, funds)")
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="seed of the order mix")] = None,
    large_share: Annotated[
        float, typer.Option(help="share of large orders, which wait for a manager's approval")
    ] = 0.0,
    json: Annotated[bool, typer.Option("--json", help="print the orders sent as JSON")] = False,
) -> None:
    """Produce OrderCreated messages (against the demo catalogue; run `seed` first)."""
    import random  # noqa: PLC0415

    import orjson  # noqa: PLC0415
    from rich.progress import Progress  # noqa: PLC0415

    from participants.order_mix import Plan, plan_orders  # noqa: PLC0415
    from participants.order_sender import send_orders  # noqa: PLC0415
    from saga_worker import make_producer  # noqa: PLC0415

    settings = settings_or_exit()
    if not 0 <= fail_share <= 1 or not 0 <= large_share <= 1 - fail_share:
        typer.echo(
            "error: --fail-share and --large-share must be within 0..1, together too", err=True
        )
        raise typer.Exit(2)
    rng = random.Random(seed)  # noqa: S311 - an order mix, not a secret
    planned = plan_orders(count, fail_share, rng, large_share=large_share)

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
        large = sum(o.plan in (Plan.APPROVED, Plan.REJECTED) for o in planned)
        typer.echo(f"sent {count} orders ({failing - large} planned to fail, {large} large)")


def main() -> None:
    app()
