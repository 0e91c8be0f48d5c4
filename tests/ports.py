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
