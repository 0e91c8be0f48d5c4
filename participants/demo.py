"""`saga-worker demo`: the whole system on this machine, a few hundred orders, a verdict.

Runs in a fresh topic and key prefix so every run starts clean: seeds the
participants, starts the orchestrator and the four participants as separate
processes, sends orders of which a planned share must fail (and a share that
shipping never answers, so they time out), plays the manager for the large orders
that wait for approval (approving most, rejecting a planned few, each once its
saga waits), follows them to their end, and prints what happened: sagas by final
state, why they failed, the approvals, latency percentiles, and whether stock and
money were conserved.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from participants.app import NAMES, saga_id_for_order
from participants.conservation import conservation_violations
from participants.inspection import snapshot
from participants.order_fulfillment import APPROVAL
from participants.order_mix import Plan, PlannedOrder, plan_orders
from participants.order_sender import send_orders
from participants.seed import load_seed
from saga_worker import (
    RedisClient,
    RedisSagaStore,
    SagaState,
    SagaStatus,
    Settings,
    StepStatus,
    WorkerProcess,
    discard,
    ensure_topics,
    make_producer,
    make_redis,
    saga_workers,
    until_ready,
    with_health_ports,
)
from schemas import topics as t

POLL_S = 0.25


@dataclass(frozen=True)
class DemoOptions:
    orders: int = 300
    rate: float = 150.0
    fail_share: float = 0.2
    hang_share: float = 0.03  # orders whose shipment never gets an answer: they time out
    seed: int = 2026
    timeout_s: float = 240.0
    keep: bool = False
    log_dir: Path = Path(".runtime/demo")
    large_share: float = 0.1  # orders above the approval threshold: a manager decides


async def run_demo(base: Settings, options: DemoOptions, console: Console) -> int:
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S")  # a local label for humans
    settings = base.model_copy(
        update={"saga_topic_prefix": f"demo-{run_id}.", "saga_key_prefix": f"demo-{run_id}:"}
    )
    log_dir = options.log_dir / run_id
    console.print(f"[bold]saga-worker demo[/] run {run_id}: topics and keys under demo-{run_id}")
    redis = make_redis(settings)
    workers = with_health_ports(
        saga_workers(
            settings,
            log_dir,
            NAMES,
            {
                "SAGA_SHIPPING_HANG_RATE": str(options.hang_share),
                "SAGA_PARTICIPANT_SEED": str(options.seed),
            },
        )
    )
    try:
        await ensure_topics(
            settings.kafka,
            [settings.topics.physical(n) for n in t.ALL_TOPICS],
            partitions=settings.saga_partitions,
        )
        seeded = await load_seed(redis, settings.saga_key_prefix)
        for worker in workers:
            worker.start()
        console.print(f"started {', '.join(w.name for w in workers)} (logs in {log_dir})")
        await until_ready(workers)
        console.print("every worker is ready")
        rng = random.Random(options.seed)  # noqa: S311 - a demo order mix, not a secret
        orders = plan_orders(
            options.orders, options.fail_share, rng, large_share=options.large_share
        )
        states, sent_at = await _drive(
            settings, redis=redis, orders=orders, options=options, workers=workers, console=console
        )
        snap = await snapshot(redis, settings.saga_key_prefix)
    finally:
        if not options.keep:
            for worker in workers:
                worker.stop()
            await discard(settings, redis)  # the verdict below needs nothing more
        await redis.aclose()
    completed = {s.saga_id for s in states.values() if s.status is SagaStatus.COMPLETED}
    failed = {s.saga_id for s in states.values() if s.status is SagaStatus.FAILED}
    violations = conservation_violations(seeded, snap, completed=completed, failed=failed)
    unfinished = len(orders) - len(completed) - len(failed)
    _report(console, orders, states, sent_at, violations)
    if options.keep:
        console.print(
            "workers left running; to look around:\n"
            f"  export SAGA_TOPIC_PREFIX={settings.saga_topic_prefix} "
            f"SAGA_KEY_PREFIX={settings.saga_key_prefix}\n"
            "  saga-worker stats; saga-worker list --state failed"
        )
    if unfinished:
        console.print(f"[red]{unfinished} sagas did not finish within {options.timeout_s:.0f}s[/]")
    return 1 if unfinished or violations else 0


async def _drive(
    settings: Settings,
    *,
    redis: RedisClient,
    orders: Sequence[PlannedOrder],
    options: DemoOptions,
    workers: Sequence[WorkerProcess],
    console: Console,
) -> tuple[dict[str, SagaState], dict[str, datetime]]:
    store = RedisSagaStore(redis, settings.keys)
    by_saga = {saga_id_for_order(o.order_id): o.order_id for o in orders}
    plans = {o.order_id: o.plan for o in orders}
    decided: set[str] = set()
    finished: dict[str, SagaState] = {}
    producer = make_producer(settings.kafka)
    await producer.start()
    columns = (
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            sending = progress.add_task("orders sent", total=len(orders), detail="")
            ending = progress.add_task("sagas finished", total=len(orders), detail="")
            sender = asyncio.create_task(
                send_orders(
                    producer,
                    settings.topics,
                    orders,
                    rate=options.rate,
                    on_progress=lambda n: progress.update(sending, completed=n),
                )
            )
            deadline = time.monotonic() + options.timeout_s
            while len(finished) < len(orders) and time.monotonic() < deadline:
                await asyncio.sleep(POLL_S)
                _check_alive(workers)
                open_ids = [s for s in by_saga if s not in finished]
                loaded = await store.load({s: [] for s in open_ids})
                for saga_id, row in loaded.items():
                    if row.state is not None and row.state.finished:
                        finished[saga_id] = row.state
                    elif row.state is not None and _awaits_manager(row.state, saga_id, decided):
                        decided.add(saga_id)
                        await _decide(producer, settings, by_saga[saga_id], plans)
                counts = Counter(s.status.value for s in finished.values())
                detail = f"completed {counts['completed']}  failed {counts['failed']}"
                progress.update(ending, completed=len(finished), detail=detail)
            sent_at = await sender
    finally:
        await producer.stop()
    return {by_saga[s]: state for s, state in finished.items()}, sent_at


def _awaits_manager(state: SagaState, saga_id: str, decided: set[str]) -> bool:
    return saga_id not in decided and state.step(APPROVAL.name).status is StepStatus.PENDING


async def _decide(
    producer: AIOKafkaProducer, settings: Settings, order_id: str, plans: dict[str, Plan]
) -> None:
    """The manager's decision on an order that waits for approval: as planned."""
    approved = plans[order_id] is not Plan.REJECTED
    body = {"order_id": order_id, "approved": approved, "approver": "demo-manager"}
    if not approved:
        body["reason"] = "over the monthly budget"
    topic = settings.topics.physical(t.ORDER_APPROVALS)
    await producer.send(topic, orjson.dumps(body), key=order_id.encode())


def _check_alive(workers: Sequence[WorkerProcess]) -> None:
    dead = [w for w in workers if not w.alive]
    if dead:
        names = ", ".join(f"{w.name} (see {w.log})" for w in dead)
        raise RuntimeError(f"worker exited during the demo: {names}")


# Ids and numbers vary per order; the reason is what is left without them.
_VARYING = re.compile(r"\b(ord|cust|saga)-[\w-]+|\b\d+\b")


def failure_reason(state: SagaState) -> str:
    return _VARYING.sub("#", state.error or "unknown")


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _approvals_table(console: Console, states: dict[str, SagaState]) -> None:
    """The orders that waited for a manager: how each wait ended, and how long it took."""
    ends: Counter[str] = Counter()
    waited_ms: list[float] = []
    for state in states.values():
        step = state.step(APPROVAL.name)
        if step.status is StepStatus.NOT_STARTED or (step.result is None and step.error is None):
            continue  # never got there, or skipped: a small order
        ends["approved" if step.status is StepStatus.SUCCEEDED else step.error or "failed"] += 1
        # the wait opened with the entry before its first one (the stock was held)
        first = next(i for i, h in enumerate(state.history) if h.step == APPROVAL.name)
        waited = state.history[first].at - state.history[first - 1].at
        waited_ms.append(waited.total_seconds() * 1000)
    table = Table(title="Orders that waited for approval")
    table.add_column("sagas", justify="right")
    table.add_column("how the wait ended")
    for end, count in ends.most_common():
        table.add_row(str(count), end)
    if waited_ms:
        table.caption = f"waited p50 {percentile(waited_ms, 0.5):.0f} ms"
    console.print(table)


def _report(
    console: Console,
    orders: Sequence[PlannedOrder],
    states: dict[str, SagaState],
    sent_at: dict[str, datetime],
    violations: list[str],
) -> None:
    plans = {o.order_id: o.plan for o in orders}
    outcome = Table(title="Sagas by plan and final state")
    outcome.add_column("planned")
    for status in ("completed", "failed", "unfinished"):
        outcome.add_column(status, justify="right")
    for plan in Plan:
        ids = [o for o, p in plans.items() if p is plan]
        finals = Counter(states[o].status.value if o in states else "unfinished" for o in ids)
        outcome.add_row(
            plan.value, *(str(finals[k]) for k in ("completed", "failed", "unfinished"))
        )
    console.print(outcome)

    reasons = Counter(failure_reason(s) for s in states.values() if s.status is SagaStatus.FAILED)
    why = Table(title="Why sagas failed")
    why.add_column("sagas", justify="right")
    why.add_column("reason")
    for reason, count in reasons.most_common():
        why.add_row(str(count), reason)
    console.print(why)
    _approvals_table(console, states)

    latency = Table(title="Latency, order sent to saga finished (ms)")
    for column in ("final state", "sagas", "p50", "p95", "p99", "max"):
        latency.add_column(column, justify="right")
    for status in (SagaStatus.COMPLETED, SagaStatus.FAILED):
        ms = [
            (s.updated_at - sent_at[o]).total_seconds() * 1000
            for o, s in states.items()
            if s.status is status and o in sent_at
        ]
        if ms:
            cells = [f"{percentile(ms, q):.0f}" for q in (0.5, 0.95, 0.99)] + [f"{max(ms):.0f}"]
            latency.add_row(status.value, str(len(ms)), *cells)
    console.print(latency)

    if violations:
        console.print("[red bold]conservation violated:[/]")
        for line in violations:
            console.print(f"  [red]{line}[/]")
    else:
        console.print(
            "[green]conserved:[/] stock on hand plus completed orders' reservations equals the "
            "stock loaded; balances plus completed orders' charges equal the balances loaded; "
            "failed orders hold no stock, money or shipment; one shipment and one confirmation "
            "per completed order"
        )
