"""The wheel, in a fresh venv, works next to a user's own `schemas.py` and `participants.py`.

The wheel is built from a copy of the repository (an in-tree build would leave
build/ and an .egg-info behind) and must hold the package `saga_worker` alone,
with its Lua scripts: the order-fulfillment sample runs from the repository, so
installing the library claims no generic import names. A user folder with
modules called `schemas` and `participants` then loads its app with
`saga_worker.load_app`, runs sagas of it in the in-memory `SagaHarness`, and
calls the installed `saga-worker` command. Needs PyPI for the dependencies; no
broker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
# What the build reads, and the sample next to it (so leaving it out is proven, not assumed).
COPIED = ("pyproject.toml", "README.md", "saga_worker", "participants", "schemas")
LEFT_BEHIND = ("build", "dist", "*.egg-info")  # what an in-tree build would leave in the repo

USER_SCHEMAS = '''\
"""The user's own messages, in a module that happens to be called schemas."""

from saga_worker import WireMessage

OWNER = "the user"


class TripRequested(WireMessage):
    trip_id: str
    nights: int
'''

USER_PARTICIPANTS = '''\
"""The user's own participants, in a module that happens to be called participants."""

from saga_worker import Handler, HandlerParticipant, JsonObject, Kind, SagaCommand

OWNER = "the user"


async def book(command: SagaCommand, key: str) -> JsonObject:
    return {"booking": key}


async def cancel(command: SagaCommand, key: str) -> JsonObject:
    return {}


HOTELS = HandlerParticipant(
    name="hotels",
    routes={
        "Hotels.Book": Handler(SagaCommand, Kind.ACTION, book),
        "Hotels.Cancel": Handler(SagaCommand, Kind.COMPENSATION, cancel),
    },
)
'''

USER_APP = '''\
"""A tiny saga app: book a hotel, then charge the card (the pivot)."""

from saga_worker import App, SagaDefinition, Step, StepKind

from participants import HOTELS
from schemas import TripRequested

TRIP_BOOKING = SagaDefinition(
    name="TripBooking",
    version=1,
    stages=(
        Step("book_hotel", "Hotels.Book", "Hotels.Cancel"),
        Step("charge_card", "Payments.Charge", kind=StepKind.PIVOT),
    ),
    completed_topic="TripBooked",
    failed_topic="TripFailed",
)

app = App("trips")
app.saga(
    TRIP_BOOKING, start_topic="TripRequested", start_model=TripRequested, business_key="trip_id"
)
app.participant(HOTELS)
'''

USER_SCRIPT = '''\
"""Runs with the venv's python in the user folder; prints what it saw as JSON."""

import json
import sys

import participants
import saga_worker
import schemas
from saga_worker import Fail, SagaHarness, StepScript, load_app

app = load_app("myapp:app")
(trip,) = app.sagas
start = trip.start_model.model_validate({"trip_id": "trip-1", "nights": 2})

booked = SagaHarness(trip.definition)
booked_state = booked.run_saga(trip.saga_id("trip-1"), start.model_dump())

declined = SagaHarness(
    trip.definition, {"charge_card": StepScript(attempts=(Fail("card declined"),))}
)
declined_state = declined.run_saga(trip.saga_id("trip-2"), {"trip_id": "trip-2", "nights": 1})

print(json.dumps({
    "schemas": schemas.__file__,
    "participants": participants.__file__,
    "saga_worker": saga_worker.__file__,
    "owners": [schemas.OWNER, participants.OWNER],
    "start_model": f"{trip.start_model.__module__}.{trip.start_model.__name__}",
    "participant_names": list(app.participant_names),
    "booked": booked_state.status,
    "booked_topics": [m.topic for m in booked.published],
    "declined": declined_state.status,
    "declined_topics": [m.topic for m in declined.published],
    "sample_modules": sorted(
        name for name in sys.modules if name.startswith(("schemas.", "participants."))
    ),
}))
'''


@dataclass(frozen=True)
class Installed:
    source: Path  # the copy of the repository the wheel was built from
    wheel: Path
    venv: Path
    user: Path
    env: dict[str, str]
    timings: dict[str, float]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=self.user,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def left_behind() -> set[str]:
    return {p.name for pattern in LEFT_BEHIND for p in ROOT.glob(pattern)}


def run_checked(args: list[str | Path], timeout: float, env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def copy_source(target: Path) -> None:
    target.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=skip)
        else:
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    # Only this test's environment: no PYTHONPATH to the repository, no active venv or settings.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"} and not k.startswith("SAGA_")
    }
    timings: dict[str, float] = {}
    before = left_behind()

    started = time.monotonic()
    copy_source(base / "src")
    run_checked(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            base / "dist",
            base / "src",
        ],
        timeout=120,
        env=env,
    )
    (wheel,) = (base / "dist").glob("saga_worker-*.whl")
    timings["build"] = time.monotonic() - started
    assert left_behind() == before, "building the wheel left files in the repository"

    started = time.monotonic()
    venv = base / "venv"
    run_checked([sys.executable, "-m", "venv", venv], timeout=60, env=env)
    timings["venv"] = time.monotonic() - started

    started = time.monotonic()
    run_checked(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], timeout=150, env=env
    )
    timings["install"] = time.monotonic() - started

    user = base / "user"
    user.mkdir()
    (user / "schemas.py").write_text(USER_SCHEMAS)
    (user / "participants.py").write_text(USER_PARTICIPANTS)
    (user / "myapp.py").write_text(USER_APP)
    (user / "run_sagas.py").write_text(USER_SCRIPT)
    yield Installed(base / "src", wheel, venv, user, {**env, "COLUMNS": "200"}, timings)
    print(f"wheel test timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    shutil.rmtree(venv, ignore_errors=True)  # ~100 MB; pytest keeps the last few tmp dirs


def test_the_wheel_holds_saga_worker_alone_with_its_lua_scripts(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        console_scripts = wheel.read(entry_points).decode()

    top = {name.split("/")[0] for name in names}
    assert "schemas" not in top
    assert "participants" not in top
    assert {t for t in top if not t.endswith(".dist-info")} == {"saga_worker"}
    package = installed.source / "saga_worker"
    shipped = {
        p.relative_to(installed.source).as_posix() for p in package.rglob("*") if p.is_file()
    }
    lua = {p for p in shipped if p.endswith(".lua")}
    assert {p.rsplit("/", 1)[0] for p in lua} == {
        "saga_worker/runtime/lua",
        "saga_worker/participant/lua",
    }
    modules = {p for p in shipped if p.endswith(".py")}
    assert lua | modules | {"saga_worker/py.typed"} <= names
    assert "saga-worker = saga_worker.cli:main" in console_scripts


def test_a_users_schemas_and_participants_stay_theirs_and_their_app_runs(
    installed: Installed,
) -> None:
    done = installed.run(installed.python, "run_sagas.py")
    assert done.returncode == 0, done.stderr[-3000:]
    seen: dict[str, Any] = json.loads(done.stdout)

    user = installed.user.resolve()
    assert Path(seen["schemas"]).resolve() == user / "schemas.py"
    assert Path(seen["participants"]).resolve() == user / "participants.py"
    assert Path(seen["saga_worker"]).resolve().is_relative_to(installed.venv.resolve())
    assert seen["owners"] == ["the user", "the user"]
    assert seen["sample_modules"] == []
    assert seen["start_model"] == "schemas.TripRequested"
    assert seen["participant_names"] == ["hotels"]

    assert seen["booked"] == "completed"
    assert seen["booked_topics"] == ["Hotels.Book", "Payments.Charge", "TripBooked"]
    assert seen["declined"] == "failed"
    assert seen["declined_topics"] == [
        "Hotels.Book",
        "Payments.Charge",
        "Hotels.Cancel",
        "TripFailed",
    ]


def test_the_installed_command_shows_help(installed: Installed) -> None:
    done = installed.run(installed.venv / "bin" / "saga-worker", "--help")
    assert done.returncode == 0, done.stderr
    for command in ("orchestrator", "participant", "all"):
        assert command in done.stdout


def test_the_installed_command_names_an_app_that_is_not_there_in_one_line(
    installed: Installed,
) -> None:
    done = installed.run(
        installed.venv / "bin" / "saga-worker", "orchestrator", "--app", "myapp:nothing"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:")
    assert "myapp:nothing" in lines[0]
