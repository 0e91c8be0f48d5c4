"""A Kafka and a Redis of the chaos run's own, on free ports, that it may kill and restart.

With SAGA_REDIS_MODE=cluster (as `make test-cluster` sets it) the Redis is a local
Redis Cluster of its own (devstack/cluster.py: 3 primaries, 3 replicas), and killing
Redis kills every node of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack import cluster
from tests.ports import free_port_run, free_ports

ROOT = Path(__file__).resolve().parents[2]


class PrivateStack:
    def __init__(self, runtime: Path) -> None:
        kafka, controller, redis = free_ports(3)
        self.runtime = runtime
        self.kafka_port, self.redis_port = kafka, redis
        self.cluster = cluster.enabled()
        self.cluster_port = free_port_run(cluster.NODES, also_above=10000) if self.cluster else 0
        self.env = {
            **os.environ,
            "SAGA_RUNTIME_DIR": str(runtime),
            "SAGA_KAFKA_PORT": str(kafka),
            "SAGA_KAFKA_CONTROLLER_PORT": str(controller),
            "SAGA_REDIS_PORT": str(redis),
            # Every write fsynced: a kill -9 of Redis must lose nothing acknowledged.
            "SAGA_REDIS_APPENDFSYNC": "always",
            "SAGA_REDIS_CLUSTER_PORT": str(self.cluster_port),
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        if self.cluster:
            nodes = ",".join(f"127.0.0.1:{self.cluster_port + n}" for n in range(cluster.NODES))
            return f"redis+cluster://{nodes}/0"
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
        """kill -9: no shutdown, no final fsync (every node of a cluster at once)."""
        if not self.cluster:
            os.kill(self.pid("redis"), signal.SIGKILL)
            return
        for n in range(cluster.NODES):
            node = self.runtime / "redis-cluster" / str(self.cluster_port + n)
            os.kill(int((node / "redis.pid").read_text()), signal.SIGKILL)

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
