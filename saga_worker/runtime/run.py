"""Running workers: the orchestrator of an app, one of its participants, or all of them.

    asyncio.run(run_orchestrator(app))
    asyncio.run(run_participant(app, "payments"))

Each runs until SIGTERM or SIGINT, then finishes the batch in hand, commits it
and returns. Settings come from the environment unless given. Fault-injection
knobs of a participant (`SAGA_<NAME>_*`, see saga_worker.participant.knobs) come
from the environment too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Protocol

from saga_worker.app import App
from saga_worker.observability.metrics import WorkerMetrics, render_together
from saga_worker.observability.tracing import configure_tracing
from saga_worker.participant.knobs import Knobs
from saga_worker.participant.runtime import ParticipantWorker
from saga_worker.runtime.health import HealthServer
from saga_worker.runtime.orchestrator import Orchestrator
from saga_worker.settings import Settings, load_settings


class Runnable(Protocol):
    def stop(self) -> None: ...

    async def run(self) -> None: ...


class Worker(Runnable, Protocol):
    @property
    def ready(self) -> bool: ...

    @property
    def metrics(self) -> WorkerMetrics: ...


def participant_worker(app: App, name: str, settings: Settings) -> ParticipantWorker:
    """The worker of the participant `name` of `app` (UnknownParticipantError if none)."""
    participant = app.build_participant(name)
    return ParticipantWorker(participant, settings, Knobs.from_env(name, os.environ))


def all_workers(app: App, settings: Settings) -> Together:
    """The orchestrator (if the app has sagas) and every participant, as one worker."""
    # One process, one port: the group serves health and metrics for all of them; and
    # one tracer provider, named for the process (unless one is set up already).
    configure_tracing("saga-worker")
    quiet = settings.model_copy(update={"saga_health_port": 0})
    workers: list[Worker] = [Orchestrator(quiet, app)] if app.sagas else []
    workers += [participant_worker(app, name, quiet) for name in app.participant_names]
    return Together(workers, settings)


async def serve(worker: Runnable) -> None:
    """Runs `worker` until SIGTERM or SIGINT, which drain its batch and return."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


async def run_orchestrator(app: App, settings: Settings | None = None) -> None:
    await serve(Orchestrator(settings or load_settings(), app))


async def run_participant(app: App, name: str, settings: Settings | None = None) -> None:
    await serve(participant_worker(app, name, settings or load_settings()))


async def run_all(app: App, settings: Settings | None = None) -> None:
    await serve(all_workers(app, settings or load_settings()))


class Together:
    """Several workers as one: stop stops all, run ends when all have ended. Ready when
    every one is; /metrics serves all of theirs."""

    def __init__(self, workers: list[Worker], settings: Settings) -> None:
        self._workers = workers
        self._settings = settings
        self._tasks: list[asyncio.Task[None]] = []
        self.health = HealthServer(
            settings.saga_health_host,
            settings.saga_health_port,
            lambda: all(not t.done() for t in self._tasks),
            lambda: self.ready,
            metrics=lambda: render_together([w.metrics.registry for w in self._workers]),
        )

    @property
    def ready(self) -> bool:
        return all(w.ready for w in self._workers)

    def stop(self) -> None:
        for worker in self._workers:
            worker.stop()

    async def run(self) -> None:
        if self._settings.saga_health_port:
            await self.health.start()
        self._tasks = [asyncio.create_task(w.run()) for w in self._workers]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            self.stop()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.health.stop()
