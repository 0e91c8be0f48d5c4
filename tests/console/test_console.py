"""The console in a real browser (Debian's headless chromium) on the real broker and
Redis, with the real orchestrator and scripted participants: what an operator sees and
does, and what the console refuses."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from playwright.async_api import Page
from redis.asyncio import Redis

from saga_worker.cli.dlq import read_letters
from saga_worker.cli.operations import dead_letter_topic
from saga_worker.settings import Settings
from schemas import topics as t
from tests.console.support import running_console, screenshot
from tests.eventually import assert_eventually
from tests.http_probe import http_get
from tests.integration.saga_support import (
    ROOT,
    SHORT,
    SagaReader,
    ScriptedParticipants,
    cli_env,
    fail_reply,
    fast_fulfillment,
    operator_retries_until_failed,
    order,
    order_app,
    produce,
    reply_for,
    running_orchestrator,
    send_orders,
    settings_for,
)
from tests.ports import free_ports
from tests.readme import run_block
from tests.services import Services

Reply = list[tuple[str, dict[str, Any]]]
SILENT = "o-slow"  # orders whose payment is never answered: they stay pending


def settings_of(services: Services, prefix: str) -> Settings:
    return settings_for(services, prefix, saga_console_refresh_s=1)


async def number(page: Page, selector: str) -> int:
    return int((await page.inner_text(selector)).strip())


async def test_the_overview_counts_running_sagas_and_refreshes_itself_the_list_filters_and_pages(
    services: Services, prefix: str, redis_client: Redis, page: Page
) -> None:
    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        if topic == t.PROCESS_PAYMENT and cmd["order_id"].startswith(SILENT):
            return []
        if topic == t.PROCESS_PAYMENT and cmd["order_id"] == "o-declined":
            return [fail_reply(cmd, "card declined", retryable=False)]
        return [reply_for(topic, cmd)]

    settings = settings_of(services, prefix)
    reader = SagaReader(redis_client, settings)
    app = order_app()
    done = [f"o-{n}" for n in range(4)]
    async with (
        running_orchestrator(settings),
        ScriptedParticipants(settings.kafka, prefix, script).running(),
        running_console(settings, app) as url,
    ):
        await send_orders(
            settings.kafka, prefix, [order(o) for o in [*done, "o-declined", f"{SILENT}-1"]]
        )
        for o in done:
            await reader.wait_status(o, "completed")
        await reader.wait_status("o-declined", "failed")
        await reader.wait_status(f"{SILENT}-1", "pending")
        await page.goto(url)
        assert await number(page, "td[data-state=completed]") == 4
        assert await number(page, "td[data-state=failed]") == 1
        assert await number(page, "td[data-state=pending]") == 1
        assert "started 6" in await page.inner_text("#per-minute")
        assert "completed 4" in await page.inner_text("#per-minute")

        # More sagas while the page stays open: it refreshes itself.
        await send_orders(settings.kafka, prefix, [order("o-4"), order(f"{SILENT}-2")])
        await assert_eventually(
            lambda: _counts(page),
            lambda counts: counts == (5, 2),
            within=30,
            message="the overview showed the new sagas without a reload",
        )
        await screenshot(page, "overview")

        await page.goto(f"{url}/sagas?limit=3")
        first = await page.locator("tr.saga-row").all_inner_texts()
        await page.click("#next-page")
        second = await page.locator("tr.saga-row").all_inner_texts()
        await page.click("#next-page")
        third = await page.locator("tr.saga-row").all_inner_texts()
        assert [len(first), len(second), len(third)] == [3, 3, 2]
        assert await page.locator("#next-page").count() == 0
        shown = " ".join(first + second + third)
        assert all(o in shown for o in [*done, "o-4", "o-declined", f"{SILENT}-1", f"{SILENT}-2"])
        await page.goto(f"{url}/sagas")
        await screenshot(page, "sagas")

        await page.select_option("select[name=state]", "failed")
        await page.click("form.filters button")
        assert [r.split("\t")[3] for r in await _rows(page)] == ["o-declined"]
        await page.goto(f"{url}/sagas?state=pending&type=OrderFulfillment")
        assert sorted(r.split("\t")[3] for r in await _rows(page)) == [
            f"{SILENT}-1",
            f"{SILENT}-2",
        ]
        await page.goto(f"{url}/sagas?key=o-2")
        assert [r.split("\t")[1] for r in await _rows(page)] == ["completed"]
        await page.goto(f"{url}/sagas?older_than=1h")
        assert await page.locator("tr.saga-row").count() == 0
        await page.goto(f"{url}/sagas?newer_than=1h&limit=50")
        assert await page.locator("tr.saga-row").count() == 8

        await page.goto(f"{url}/sagas/o-1")
        assert await page.locator("#timeline rect.action").count() == 4
        assert await page.locator("#timeline rect.compensation").count() == 0
        await page.goto(f"{url}/sagas/o-declined")
        assert await page.locator("#timeline rect.action").count() == 2  # inventory, payment
        assert await page.locator("#timeline rect.compensation").count() == 1  # the release
        assert "card declined" in await page.inner_text("#steps")
        await screenshot(page, "saga")


async def _counts(page: Page) -> tuple[int, int]:
    return (
        await number(page, "td[data-state=completed]"),
        await number(page, "td[data-state=pending]"),
    )


async def _rows(page: Page) -> list[str]:
    return await page.locator("tr.saga-row").all_inner_texts()


async def test_retry_and_abort_from_the_saga_page_change_the_saga(
    services: Services, prefix: str, redis_client: Redis, page: Page
) -> None:
    answering = asyncio.Event()

    def script(topic: str, cmd: dict[str, Any]) -> Reply:
        if topic == t.PROCESS_PAYMENT and cmd["order_id"] == "o-stuck":
            return [fail_reply(cmd, "card declined", retryable=False)]
        if topic == t.PROCESS_PAYMENT and cmd["order_id"] == "o-abort":
            return []
        if topic == t.RELEASE_RESERVATION and not answering.is_set():
            return []
        return [reply_for(topic, cmd)]

    settings = settings_of(services, prefix)
    reader = SagaReader(redis_client, settings)
    definition = fast_fulfillment(compensation_timeout=SHORT)
    async with (
        running_orchestrator(settings, definition),
        ScriptedParticipants(settings.kafka, prefix, script).running(),
        running_console(settings, order_app(definition)) as url,
    ):
        await send_orders(settings.kafka, prefix, [order("o-stuck"), order("o-abort")])
        stuck = await reader.wait_status("o-stuck", "needs_operator")
        await assert_eventually(
            lambda: reader.state("o-abort"),
            lambda s: s is not None and s.step("process_payment").status.value == "pending",
            message="o-abort waits on its payment",
        )

        await page.goto(f"{url}/sagas/o-stuck")
        assert await page.locator("#abort").count() == 1  # needs_operator: both offered
        await screenshot(page, "saga-needs-operator")
        answering.set()
        await page.click("#retry")
        assert f"resumed saga {stuck.saga_id}: now compensating" in await page.inner_text("#flash")
        await operator_retries_until_failed(services, prefix, reader, "o-stuck")

        await page.goto(f"{url}/sagas/o-abort")
        assert await page.locator("#retry").count() == 0  # only for a saga needing an operator
        await page.fill("input[name=reason]", "customer called")
        await page.click("#abort")
        assert "now compensating" in await page.inner_text("#flash")
        failed = await reader.wait_status("o-abort", "failed")
        await page.goto(f"{url}/sagas/o-abort")
        assert await page.locator("#abort").count() == 0  # finished: nothing to offer

    assert "customer called" in (failed.error or "")


async def test_a_dead_letter_is_replayed_from_the_page_and_hostile_bytes_read_as_text(
    services: Services, prefix: str, page: Page
) -> None:
    settings = settings_of(services, prefix)
    hostile = b"<script>window.hacked = 1</script>\x00\x1b[31m\x07" + b"x" * 5000
    async with running_orchestrator(settings), running_console(settings, order_app()) as url:
        topic = settings.topics.physical(t.ORDER_CREATED)
        await produce(
            settings.kafka,
            topic,
            hostile,
            key=b"k",
            headers=[("note", b"<img src=x onerror=alert(1)>")],
        )
        letters = await assert_eventually(
            lambda: read_letters(settings.kafka, dead_letter_topic(settings), newest=10),
            lambda found: len(found) == 1,
            within=30,
            message="the hostile record was dead-lettered",
        )
        (letter,) = letters
        await page.goto(f"{url}/dead-letters")
        row = page.locator(f"tr.letter[data-id='{letter.id}']")
        await row.locator("summary").click()
        assert "<script>window.hacked = 1</script>" in await row.inner_text()
        assert "<img src=x onerror=alert(1)>" in await row.inner_text()
        assert await page.evaluate("window.hacked") is None
        await screenshot(page, "dead-letters")

        await row.locator("input[name=letter]").check()
        await page.click("#replay")
        flash = await page.inner_text("#flash")
        assert f"replayed 1 dead letters; {topic}: 1" in flash
        # The replayed record failed again: a new letter names the one sent back.
        again = await assert_eventually(
            lambda: read_letters(settings.kafka, dead_letter_topic(settings), newest=10),
            lambda found: len(found) == 2,
            within=30,
            message="the replayed record was dead-lettered again",
        )
        assert again[-1].lineage is not None
        assert again[-1].lineage.replayed_from == letter.id


async def test_hostile_saga_data_reads_as_text_and_forged_or_read_only_actions_are_refused(
    services: Services, prefix: str, redis_client: Redis, page: Page
) -> None:
    settings = settings_of(services, prefix)
    reader = SagaReader(redis_client, settings)
    # Unknown fields are kept in the saga's data: any JSON at all can arrive there.
    body = order(
        "o-hostile",
        customer_id="<script>window.hacked=1</script>",
        note="<script>window.hacked = 2</script>\x00\x1b[2J\u202e",
        blob="y" * 50_000,
        shipping_address={"line1": "1 Main St", "country": "FR", "extra": "</pre><b>bold</b>"},
    )
    async with (
        running_orchestrator(settings),
        ScriptedParticipants(settings.kafka, prefix, lambda topic, cmd: []).running(),
        running_console(settings, order_app()) as url,
    ):
        await send_orders(settings.kafka, prefix, [body])
        state = await reader.wait_status("o-hostile", "pending")
        await page.goto(f"{url}/sagas/o-hostile")
        data = await page.inner_text("#data")
        assert "<script>window.hacked=1</script>" in data
        assert (
            "<script>window.hacked = 2</script>\\u0000\\u001b[2J" in data
        )  # control characters shown, not obeyed
        assert "</pre><b>bold</b>" in data
        assert "48000 more characters" in data  # a very long value is clipped
        assert await page.evaluate("window.hacked") is None
        assert await page.locator("b", has_text="bold").count() == 0
        assert await page.locator("script").count() == 1  # the console's own

        retry_url = f"{url}/sagas/{state.saga_id}/abort"
        missing = await page.request.post(retry_url, form={"reason": "forged"})
        wrong = await page.request.post(retry_url, form={"reason": "forged", "csrf": "guess"})
        assert (missing.status, wrong.status) == (403, 403)
        assert await missing.text() == "refused: missing or wrong CSRF token"
        async with running_console(settings, order_app(), read_only=True) as watching:
            await page.goto(f"{watching}/sagas/o-hostile")
            assert await page.locator("#abort, #retry, form[method=post]").count() == 0
            await page.goto(f"{watching}/dead-letters")  # its form token, for the POST below
            token = await page.locator("input[name=csrf]").get_attribute("value")
            refused = await page.request.post(
                f"{watching}/sagas/{state.saga_id}/abort", form={"csrf": token or ""}
            )
            assert refused.status == 403
            assert await refused.text() == "refused: the console is read-only"
        after = await reader.state("o-hostile")
        assert after is not None
        assert after.status.value == "pending"


async def test_the_console_refuses_to_listen_beyond_loopback_without_credentials(
    services: Services, prefix: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "saga_worker",
        "console",
        "--host",
        "0.0.0.0",  # refused before anything is bound
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SAGA_TOPIC_PREFIX": prefix},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert err.decode().splitlines() == [
        "error: the console would listen on 0.0.0.0, beyond loopback, without credentials:"
        " set SAGA_CONSOLE_TOKEN (or SAGA_CONSOLE_USER and SAGA_CONSOLE_PASSWORD),"
        " or listen on 127.0.0.1"
    ]


async def test_the_console_starts_as_the_readme_says(services: Services, prefix: str) -> None:
    ((command, *args),) = run_block("console")
    assert command == "saga-worker"
    (port,) = free_ports(1)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "saga_worker",
        *args,
        cwd=ROOT,
        env=cli_env(services, prefix, SAGA_CONSOLE_PORT=str(port)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )

    async def overview() -> int:
        try:
            return (await http_get(port, "/"))[0]
        except OSError:
            return 0

    try:
        assert await assert_eventually(overview, within=30, message="the console answers") == 200
        assert (await http_get(port, "/sagas?state=needs_operator"))[0] == 200
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    # uvicorn shuts down cleanly, then ends by the signal it was sent, as a server does.
    assert proc.returncode in (0, -signal.SIGTERM), err.decode()
    assert b"console listening" in err
    assert b"Traceback" not in err
