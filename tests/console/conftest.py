"""Debian's headless chromium driven by Playwright (never a browser Playwright downloads),
one per session, and a page per test that accepts every confirmation.

`make browser` installs chromium (SAGA_CHROMIUM names another executable).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Dialog, Page, async_playwright

CHROMIUM = os.environ.get("SAGA_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # --no-sandbox: chromium's sandbox refuses to run as root, which CI is.
        launched = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    opened = await context.new_page()
    opened.set_default_timeout(20_000)

    async def confirm(dialog: Dialog) -> None:  # every action asks first; the operator agrees
        await dialog.accept()

    opened.on("dialog", confirm)
    try:
        yield opened
    finally:
        await context.close()
