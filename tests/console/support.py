"""The console served in the test's own event loop, and screenshots of its pages
(under .runtime/screenshots, ignored by git)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from playwright.async_api import Page

from saga_worker.app import App
from saga_worker.console.security import Credentials
from saga_worker.console.server import Console, create_app
from saga_worker.settings import Settings
from tests.eventually import assert_eventually
from tests.ports import free_ports

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".runtime" / "screenshots"


@contextlib.asynccontextmanager
async def running_console(
    settings: Settings, app: App, *, read_only: bool = False
) -> AsyncIterator[str]:
    """The console of these settings (each test's own prefix) and app, in this event loop
    on a free loopback port, for the block; yields its URL."""
    (port,) = free_ports(1)
    web = create_app(Console(settings, app, Credentials.of(settings), read_only))
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()
        return server.started

    try:
        await assert_eventually(started, within=20, message="console serving")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=20)


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
