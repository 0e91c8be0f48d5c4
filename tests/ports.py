"""Free loopback ports for the processes a test starts on its own."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    # All bound at once, so the same port cannot be handed out twice.
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port_run(count: int, *, also_above: int = 0, first: int = 20000) -> int:
    """The first of `count` consecutive free loopback ports (and, with `also_above`, the
    same ports that much higher free too: a Redis Cluster node's bus port)."""
    for base in range(first, 30000 - count, count):
        wanted = [base + n for n in range(count)]
        if also_above:
            wanted += [port + also_above for port in wanted]
        if all(_free(port) for port in wanted):
            return base
    raise RuntimeError(f"no {count} consecutive free ports from {first}")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
