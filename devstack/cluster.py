"""A local Redis Cluster: 3 primaries and 3 replicas from the same `redis-server`, on
loopback ports SAGA_REDIS_CLUSTER_PORT .. +5 (7000 by default), with AOF like the
single Redis. Chosen by SAGA_REDIS_MODE=cluster (`make up REDIS=cluster`); `stack.py`
calls `start_cluster` / `stop_cluster` in place of the single Redis.

The cluster is created once (`redis-cli --cluster create`); its node files under
`.runtime/redis-cluster/<port>/` let a later `up` restart the same cluster. Ready
means every node reports `cluster_state:ok`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devstack import stack

NODES = 6  # 3 primaries, each with one replica
REPLICAS = 1


def mode() -> str:
    return os.environ.get("SAGA_REDIS_MODE", "single").strip().lower() or "single"


def enabled() -> bool:
    return mode() == "cluster"


def base_port() -> int:
    return int(os.environ.get("SAGA_REDIS_CLUSTER_PORT", "7000"))


def ports() -> list[int]:
    return [base_port() + n for n in range(NODES)]


def url() -> str:
    """Every node named: a client starting while one is down starts from another."""
    nodes = ",".join(f"127.0.0.1:{port}" for port in ports())
    return f"redis+cluster://{nodes}/0"


def home() -> Path:
    return stack.RUNTIME / "redis-cluster"


def pidfile(port: int) -> Path:
    return home() / str(port) / "redis.pid"


def _ask(port: int, command: bytes) -> bytes:
    """One command's reply, read until the node goes quiet (small replies only)."""
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(command)
            sock.settimeout(0.2)
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        pass
    return data


def cluster_ok(port: int) -> bool:
    return b"cluster_state:ok" in _ask(port, b"CLUSTER INFO\r\n")


def running() -> list[int]:
    return [p for p in ports() if stack.read_pid(pidfile(p)) is not None]


def start_cluster() -> bool:
    """Starts the nodes not running and creates the cluster if it never was; False if
    every node already ran."""
    if len(running()) == NODES:
        return False
    binary = stack.redis_binary()
    fresh = False
    for port in ports():
        if stack.read_pid(pidfile(port)) is not None:
            continue
        stack.require_port_free(port, "a Redis Cluster node")
        stack.require_port_free(port + 10000, "a Redis Cluster node's bus")
        node = home() / str(port)
        node.mkdir(parents=True, exist_ok=True)
        fresh = fresh or not (node / "nodes.conf").exists()
        cluster_args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            os.environ.get("SAGA_REDIS_CLUSTER_NODE_TIMEOUT_MS", "2000"),
        ]
        stack.spawn(
            [binary, *stack.redis_args(port, node), *cluster_args],
            node / "redis.log",
            pidfile(port),
        )
    for port in ports():
        log = home() / str(port) / "redis.log"
        stack.wait_until(_ready(port), f"Redis node {port}", log, pidfile(port))
    if fresh:
        _create()
    _wait_ok()
    return True


def _ready(port: int) -> Callable[[], bool]:
    return lambda: stack.redis_ready(port)


def _create() -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise stack.StackError("redis-cli not found: install redis-tools (Debian: redis-tools)")
    addresses = [f"127.0.0.1:{p}" for p in ports()]
    done = subprocess.run(  # noqa: S603 - fixed argv built here
        [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(REPLICAS)],
        input="yes\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise stack.StackError(f"redis-cli --cluster create failed: {done.stdout[-300:]}")


def _wait_ok() -> None:
    deadline = time.monotonic() + stack.READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(cluster_ok(p) for p in ports()):
            return
        time.sleep(0.25)
    raise stack.StackError(
        f"Redis Cluster not ok after {stack.READY_TIMEOUT_S:g}s; see {home()}/<port>/redis.log"
    )


def stop_cluster() -> None:
    for port in ports():
        stack.stop_pid(pidfile(port), f"redis node {port}")


def discard() -> None:
    """Stops the nodes and forgets the cluster (node files, data)."""
    stop_cluster()
    shutil.rmtree(home(), ignore_errors=True)
