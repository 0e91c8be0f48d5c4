"""One HTTP GET against a worker's health server, for tests that probe it."""

from __future__ import annotations

import asyncio


async def http_status(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def http_response(port: int, path: str) -> tuple[str, bytes]:
    """The head (status line and headers) and the body of one GET, read to the end (the
    server closes the connection after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return head.decode(), body


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """Status and body of one GET."""
    head, body = await http_response(port, path)
    return int(head.split()[1]), body
