"""Liveness, readiness and metrics over HTTP for container platforms and Prometheus.

`GET /healthz` answers 200 while the worker's loops are alive and its consumer
loop makes progress (see worker_shell.py); `GET /readyz`
answers 200 once it has joined its consumer group and reached Redis, 503
otherwise; `GET /metrics` serves the worker's Prometheus metrics. Binds to
loopback unless SAGA_HEALTH_HOST says otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST

Probe = Callable[[], bool]
Render = Callable[[], bytes]


class HealthServer:
    def __init__(
        self, host: str, port: int, live: Probe, ready: Probe, *, metrics: Render | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._live = live
        self._ready = ready
        self._metrics = metrics
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            parts = request.decode("latin-1").split()
            status, content_type, body = self._answer(parts[1] if len(parts) > 1 else "")
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics" and self._metrics is not None:
            return "200 OK", CONTENT_TYPE_LATEST, self._metrics()
        probe = {"/healthz": self._live, "/readyz": self._ready}.get(path)
        if probe is None:
            return "404 Not Found", "text/plain", b"not found\n"
        if probe():
            return "200 OK", "text/plain", b"ok\n"
        return "503 Service Unavailable", "text/plain", b"not ready\n"
