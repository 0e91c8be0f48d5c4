"""Screenshots of every console page over a running system: `make demo KEEP=1`, then
`make console-screenshots` with the SAGA_TOPIC_PREFIX and SAGA_KEY_PREFIX it printed.

The console runs in this process on a free loopback port, over the settings and app
of the environment (the sample by default); Debian's chromium visits the overview, the
list, a failed saga, one that waited for approval, and the dead letters, and saves each
page under .runtime/screenshots/demo-*.png.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import Page, async_playwright

from saga_worker.loading import load_app
from saga_worker.settings import load_settings
from tests.console.conftest import CHROMIUM
from tests.console.support import SCREENSHOTS, running_console, screenshot


async def first_saga(page: Page, url: str, query: str) -> str | None:
    await page.goto(f"{url}/sagas?{query}")
    link = page.locator("tr.saga-row a").first
    return await link.get_attribute("href") if await link.count() else None


async def main() -> None:
    settings = load_settings()
    async with (
        running_console(settings, load_app(settings.saga_app)) as url,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1360, "height": 900})
        await page.goto(url)
        await screenshot(page, "demo-overview")
        await page.goto(f"{url}/sagas")
        await screenshot(page, "demo-sagas")
        for name, query in [("failed", "state=failed"), ("completed", "state=completed")]:
            href = await first_saga(page, url, query)
            if href is not None:
                await page.goto(f"{url}{href}")
                await screenshot(page, f"demo-saga-{name}")
        await page.goto(f"{url}/dead-letters")
        await screenshot(page, "demo-dead-letters")
        await browser.close()
    print(f"screenshots in {SCREENSHOTS}")


if __name__ == "__main__":
    asyncio.run(main())
