"""A Kafka and a Redis of the chaos run's own, on free ports, that it may kill and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]


class PrivateStack:
    def __init__(self, runtime: Path) -> None:
        kafka, controller, redis = free_ports(3)
        self.runtime = runtime
        self.kafka_port, self.redis_port = kafka, redis
        self.env = {
            **os.environ,
            "SAGA_RUNTIME_DIR": str(runtime),
            "SAGA_KAFKA_PORT": str(kafka),
            "SAGA_KAFKA_CONTROLLER_PORT": str(controller),
            "SAGA_REDIS_PORT": str(redis),
            # Every write fsynced: a kill -9 of Redis must lose nothing acknowledged.
            "SAGA_REDIS_APPENDFSYNC": "always",
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def up(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "devstack", "up"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"private stack did not start: {done.stderr.strip()}")

    def down(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "devstack", "down"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )

    def pid(self, name: str) -> int:
        return int((self.runtime / name / f"{name}.pid").read_text())

    def kill_redis(self) -> None:
        """kill -9: no shutdown, no final fsync."""
        os.kill(self.pid("redis"), signal.SIGKILL)

    def stop_kafka(self) -> None:
        """A clean broker stop (blocking: call it in a thread)."""
        pid = self.pid("kafka")
        os.kill(pid, signal.SIGTERM)
        for _ in range(600):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)  # waiting on a process we signalled: nothing to poll but its pid
        os.kill(pid, signal.SIGKILL)
