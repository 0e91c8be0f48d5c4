"""Entry point of a participant process: `await run_participant(name, settings)`.

Runs until SIGTERM or SIGINT, then finishes the batch in hand, commits it and
returns. Knobs (participants.knobs) and the shipping countries
(`SAGA_SHIPPING_COUNTRIES`) come from the environment. Also runnable on its own:
`python -m participants.main inventory` with settings from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from participants.knobs import Knobs
from participants.registry import build_participant
from participants.runtime import ParticipantWorker
from saga_worker.logs import configure_logging
from saga_worker.settings import Settings, load_settings


async def run_participant(name: str, settings: Settings) -> None:
    """Runs participant `name` until SIGTERM/SIGINT; drains, commits and returns."""
    participant = build_participant(name, os.environ)
    worker = ParticipantWorker(participant, settings, Knobs.from_env(name, os.environ))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit(
            "usage: python -m participants.main inventory|payment|shipping|notification"
        )
    configure_logging()
    asyncio.run(run_participant(args[0], load_settings()))


if __name__ == "__main__":
    main()
