"""Worker processes started from Python: the demo, the benchmark and the chaos suite
run the orchestrator and the participants as separate OS processes, as in production."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from saga_worker.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as the environment variables a child process reads them from."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        env[name.upper()] = str(raw)
    return env


@dataclass
class WorkerProcess:
    """One `saga-worker` command in its own process, logging to a file."""

    name: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    log: Path
    module: str = "saga_worker"  # run as `python -m <module> <args>`
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", self.module, *self.args],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.starts += 1

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (drain, commit, exit), then SIGKILL if it does not go in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def kill(self) -> None:
        if self.alive and self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def saga_workers(
    settings: Settings,
    log_dir: Path,
    participants: Sequence[str],
    extra_env: Mapping[str, str] | None = None,
) -> list[WorkerProcess]:
    """The orchestrator and the named participants of the app (`settings.saga_app`),
    one process each, not yet started."""
    env = {**settings_env(settings), **(extra_env or {})}
    workers = [WorkerProcess("orchestrator", ("orchestrator",), env, log_dir / "orchestrator.log")]
    workers += [
        WorkerProcess(name, ("participant", name), env, log_dir / f"{name}.log")
        for name in participants
    ]
    return workers


def with_health_ports(workers: list[WorkerProcess]) -> list[WorkerProcess]:
    """Gives each worker a free loopback port for /healthz, /readyz and /metrics."""
    for worker in workers:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        worker.env = {**worker.env, "SAGA_HEALTH_PORT": str(port)}
    return workers


async def until_ready(workers: list[WorkerProcess], within_s: float = 90.0) -> None:
    """Waits until every worker answers 200 on /readyz (joined its group, running)."""
    deadline = asyncio.get_running_loop().time() + within_s
    waiting = list(workers)
    while waiting:
        waiting = [w for w in waiting if not await _ready(w)]
        dead = [w.name for w in waiting if not w.alive]
        if dead:
            raise RuntimeError(f"workers exited while starting: {', '.join(dead)}")
        if waiting and asyncio.get_running_loop().time() > deadline:
            names = ", ".join(w.name for w in waiting)
            raise RuntimeError(f"workers not ready after {within_s:.0f}s: {names}")
        if waiting:
            await asyncio.sleep(0.2)


async def _ready(worker: WorkerProcess) -> bool:
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", int(worker.env["SAGA_HEALTH_PORT"])
        )
    except OSError:
        return False
    try:
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        status = await reader.readline()
    finally:
        writer.close()
    return status.split()[1:2] == [b"200"]
