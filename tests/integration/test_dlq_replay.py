"""`saga-worker dlq replay` run for real against the real broker: a replayed letter says
where it came from and how often it was sent back, a letter goes back once unless
forced, and a dry run sends nothing."""

from __future__ import annotations

from typing import Any

from saga_worker.settings import Settings
from schemas import topics as t
from tests.eventually import assert_eventually
from tests.integration.kafka_state import read_to_end
from tests.integration.saga_support import (
    cli,
    produce,
    running_orchestrator,
    settings_for,
)
from tests.services import Services

BAD = b'{"order_id": "o-bad", oops'  # never valid: each replay fails again, `not_json`


async def letters(services: Services, prefix: str, expect: int) -> list[dict[str, Any]]:
    """`dlq list --json` once it shows `expect` dead letters."""

    async def listed() -> Any:
        return (await cli(services, prefix, "dlq", "list", "--json")).json()

    found: list[dict[str, Any]] = await assert_eventually(
        listed, lambda found: len(found) == expect, message=f"{expect} dead letters"
    )
    return found


async def one_bad_order(services: Services, settings: Settings) -> tuple[str, dict[str, Any]]:
    """A bad record on OrderCreated, dead-lettered by the orchestrator: (topic, letter)."""
    source = settings.topics.physical(t.ORDER_CREATED)
    async with running_orchestrator(settings):
        await produce(settings.kafka, source, BAD, key=b"o-bad", headers=[("origin", b"shop")])
        [letter] = await letters(services, settings.saga_topic_prefix, 1)
    return source, letter


async def records_of(settings: Settings, topic: str, count: int) -> list[Any]:
    """The topic's records, exactly `count` of them. Only the CLI, which has exited,
    writes a source topic, and the dead-letter topic is read once the orchestrator has
    stopped: whatever they sent is in before the end offsets are read."""
    got = await read_to_end(settings.kafka, topic)
    assert len(got) == count, [(r.offset, r.headers) for r in got]
    return got


def replay_headers(record: Any) -> dict[str, bytes]:
    return {k: v for k, v in record.headers if k.startswith("dlq.")}


async def test_a_letter_goes_back_once_with_where_from_and_again_only_when_forced(
    services: Services, prefix: str
) -> None:
    settings = settings_for(services, prefix)
    source, letter = await one_bad_order(services, settings)
    id_ = letter["id"]

    first = await cli(services, prefix, "dlq", "replay", "--offset", id_)
    assert first.out.strip() == f"replayed 1 dead letters (1 to {source})", first.err
    _, replayed = await records_of(settings, source, 2)
    assert (replayed.key, replayed.value) == (b"o-bad", BAD)
    assert list(replayed.headers) == [
        ("origin", b"shop"),
        ("dlq.replayed_from", id_.encode()),
        ("dlq.replays", b"1"),
    ]

    again = await cli(services, prefix, "dlq", "replay", "--offset", id_)
    assert (again.code, again.out.strip()) == (1, "replayed 0 dead letters")
    assert again.err.strip().splitlines() == [
        f"skipped {id_}: already replayed; --force sends it again",
        "error: 1 of the given dead letters were not replayed",
    ]
    every = await cli(services, prefix, "dlq", "replay", "--all")
    assert every.out.strip() == "replayed 0 dead letters", every.err
    assert "skipped 1 dead letters replayed before; --force sends them again" in every.err
    await records_of(settings, source, 2)

    forced = await cli(services, prefix, "dlq", "replay", "--offset", id_, "--force")
    assert forced.out.strip() == f"replayed 1 dead letters (1 to {source})", forced.err
    *_, third = await records_of(settings, source, 3)
    assert replay_headers(third) == {"dlq.replayed_from": id_.encode(), "dlq.replays": b"1"}

    [listed] = await letters(services, prefix, 1)  # the receipts are not dead letters
    assert (listed["id"], listed["replayed"], listed["replays"]) == (id_, 2, 0)
    # Its two receipts come after it in its partition: the newest one is still the letter.
    newest = (await cli(services, prefix, "dlq", "list", "--limit", "1", "--json")).json()
    assert [(x["id"], x["replayed"]) for x in newest] == [(id_, 2)]


async def test_a_letter_failing_again_keeps_its_replay_count_and_replay_all_sends_only_the_newest(
    services: Services, prefix: str
) -> None:
    settings = settings_for(services, prefix)
    source = settings.topics.physical(t.ORDER_CREATED)
    async with running_orchestrator(settings):
        await produce(settings.kafka, source, BAD, key=b"o-bad")
        [first] = await letters(services, prefix, 1)
        replayed = await cli(services, prefix, "dlq", "replay", "--all")
        assert replayed.out.strip() == f"replayed 1 dead letters (1 to {source})", replayed.err
        _, second = await letters(services, prefix, 2)
        assert (second["replays"], second["replayed_from"]) == (1, first["id"])
        assert (second["source_offset"], second["code"]) == (1, "not_json")

        # The cause persists: each --all sends the newest letter only, not every copy.
        for expected_total in (3, 4):
            again = await cli(services, prefix, "dlq", "replay", "--all")
            assert again.out.strip() == f"replayed 1 dead letters (1 to {source})", again.err
            n = expected_total - 2
            assert f"skipped {n} dead letters replayed before" in again.err
            found = await letters(services, prefix, expected_total)
        await records_of(settings, source, 4)

    third = found[2]
    assert (third["replays"], third["replayed_from"]) == (2, second["id"])
    assert [x["replayed"] for x in found] == [1, 1, 1, 0]
    table = await cli(services, prefix, "dlq", "list")
    assert f"replay 2, from {second['id']}" in table.out
    assert "sent back 1x" in table.out


async def test_a_dry_run_lists_what_would_go_back_and_sends_nothing(
    services: Services, prefix: str
) -> None:
    settings = settings_for(services, prefix)
    source, letter = await one_bad_order(services, settings)

    dry = await cli(services, prefix, "dlq", "replay", "--all", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.strip().splitlines() == [
        f"would replay {letter['id']} to {source} (replay 1)",
        f"would replay 1 dead letters (1 to {source})",
    ]
    await records_of(settings, source, 1)
    await records_of(settings, settings.topics.physical(t.DEAD_LETTER), 1)  # no receipt

    real = await cli(services, prefix, "dlq", "replay", "--all")
    assert real.out.strip() == f"replayed 1 dead letters (1 to {source})", real.err
    await records_of(settings, source, 2)
    dry_again = await cli(services, prefix, "dlq", "replay", "--all", "--dry-run")
    assert dry_again.out.strip() == "would replay 0 dead letters"
    forced = await cli(services, prefix, "dlq", "replay", "--all", "--dry-run", "--force")
    assert forced.out.strip().splitlines()[-1] == f"would replay 1 dead letters (1 to {source})"
    await records_of(settings, source, 2)
