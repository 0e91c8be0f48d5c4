"""Mutation testing of the pure core: `make mutation`.

mutmut (3.8) makes one-line changes ("mutants") to the engine's state, retry,
definition and decide modules and to saga_worker/app.py, and runs the unit tests
that cover each changed function against it. A mutant is killed when a test
fails. The score is the share of killed mutants among those that change
behaviour: every mutant, less the reviewed equivalent ones listed in
tests/mutation/equivalent.txt. The run fails below the threshold and prints
every surviving mutant with its place, its diff and its fingerprint.

mutmut changes the bodies of functions and methods only: module-level code (the
transition table TRANSITIONS, the limits of definition.py, UNLIMITED_ATTEMPTS and the
history bounds), class bodies (dataclass defaults) and @property bodies are never
mutated. Tests pin those directly instead (the transition table pair by pair in
tests/unit/test_state.py). Objects built when a module is imported (such as
participants' ORDER_FULFILLMENT) are built before any mutant is switched on.

Everything happens in a copy of the tree under .cache/mutation/ (mutmut's own
mutants/ directory is inside it), so the working tree and anything else running
from it never see a mutated module; the copy is kept for a look afterwards
(`cd .cache/mutation/work && ../../../.venv/bin/mutmut browse`).

Options, each with an environment variable that `make mutation` passes on:

  --sample N       MUTATION_SAMPLE     test a random sample of N mutants (default 0: all)
  --seed S         MUTATION_SEED       the sample's seed (default: a random one, printed)
  --threshold P    MUTATION_THRESHOLD  the least score, in percent (default 95; 90 at least)
  --jobs J         MUTATION_JOBS       mutants tested at once (default: the CPU count)
  --max-minutes M  MUTATION_MAX_MINUTES  stop and fail after this long (default 60)

An equivalent mutant (one no caller can tell from the original) goes into
equivalent.txt as `<fingerprint> <where> -- <reason>`, copied from this
script's list of survivors. The fingerprint covers the whole function the
mutant is in, so any change to that function makes the entry stale (reported)
and the mutant counts again until someone reviews it anew. An entry whose
mutant is killed is reported too: it was not equivalent after all.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".cache" / "mutation" / "work"
EQUIVALENT_FILE = Path(__file__).resolve().parent / "equivalent.txt"

# What is mutated, and the tests that may kill a mutant (mutmut runs, for each
# mutant, only those of them that call the changed function).
MUTATED = (
    "saga_worker/engine/state.py",
    "saga_worker/engine/retry.py",
    "saga_worker/engine/definition.py",
    "saga_worker/engine/decide.py",
    "saga_worker/app.py",
)
TESTS = (
    "tests/unit/test_state.py",
    "tests/unit/test_retry.py",
    "tests/unit/test_definition.py",
    "tests/unit/test_engine.py",
    "tests/unit/test_engine_bounds.py",
    "tests/unit/test_engine_properties.py",
    "tests/unit/test_histories.py",
    "tests/unit/test_app.py",
    "tests/unit/test_waits_and_children.py",
)
# Copied into the work tree: the package, the tests and what the tests import.
COPIED = ("saga_worker", "tests", "participants", "schemas", "examples")
# The property tests with their quick profile (no shrinking, no example database)
# and a fixed seed: a mutant's fate does not depend on the luck of the draw.
TEST_ENV = {"HYPOTHESIS_PROFILE": "saga-mutation"}
PYTEST_ARGS = ("-p", "no:cacheprovider", "--noconftest", "--hypothesis-seed=0")

DETECTED = frozenset({"killed", "timeout", "segfault", "caught by type check"})
UNDETECTED = frozenset({"survived", "no tests", "suspicious"})
FINGERPRINT = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str  # mutmut's name: <module>.<mangled function>__mutmut_<n>
    path: str  # the mutated file, relative to the root
    status: str


@dataclass(frozen=True, slots=True)
class Described:
    """A mutant as a reviewer sees it: where it is, what it changes, and its fingerprint."""

    where: str  # path:line function
    diff: tuple[str, ...]  # the changed lines, "- old" and "+ new"
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Equivalent:
    fingerprint: str
    where: str
    reason: str


# -- the work tree -------------------------------------------------------------------------


def mutmut_config() -> str:
    def toml_list(items: tuple[str, ...]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    return (
        "\n\n# written by tests/mutation/run.py into its copy of the tree\n"
        "[tool.mutmut]\n"
        'source_paths = ["saga_worker/"]\n'
        f"only_mutate = {toml_list(MUTATED)}\n"
        f"also_copy = {toml_list(tuple(f'{d}/' for d in COPIED if d != 'saga_worker'))}\n"
        f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(TESTS)}\n"
        "use_git_change_detection = false\n"
    )


def prepare_work_tree() -> None:
    shutil.rmtree(WORK.parent, ignore_errors=True)
    WORK.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in COPIED:
        shutil.copytree(ROOT / name, WORK / name, ignore=ignore)
    pyproject = (ROOT / "pyproject.toml").read_text()
    if "[tool.mutmut]" in pyproject:
        raise SystemExit("pyproject.toml has a [tool.mutmut] table: the runner writes its own")
    (WORK / "pyproject.toml").write_text(pyproject + mutmut_config())


def module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def list_mutants() -> None:
    """Print the name of every mutant mutmut makes (run in the work tree, where its config is)."""
    from mutmut.mutation.file_mutation import mutate_file_contents  # noqa: PLC0415

    for path in MUTATED:
        made = mutate_file_contents(path, Path(path).read_text())
        for name in made.mutant_names:
            print(f"{module_of(path)}.{name}")


def all_mutant_names() -> list[str]:
    listed = subprocess.run(
        [sys.executable, "-m", "tests.mutation.run", "--list-mutants"],
        cwd=WORK,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        raise SystemExit(f"listing the mutants failed:\n{listed.stderr}")
    return sorted(listed.stdout.split())


# -- running mutmut ------------------------------------------------------------------------


def run_mutmut(names: list[str] | None, jobs: int, deadline: float, log: Path) -> None:
    """mutmut run over `names` (None: every mutant), its output into `log`."""
    command = [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(jobs)]
    env = {**os.environ, **TEST_ENV}
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, *(names or [])],
            cwd=WORK,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to stop it with its workers
        )
        try:
            code = process.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise SystemExit(f"mutation run stopped: over its time limit (log: {log})") from None
    if code != 0:
        print(tail(log))
        raise SystemExit(f"mutmut run failed with exit code {code} (log: {log})")


def tail(log: Path, count: int = 40) -> str:
    """The last `count` lines of a log, its progress spinner's carriage returns as lines."""
    text = log.read_text(errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-count:])


def results(names: list[str]) -> list[Mutant]:
    from mutmut.stats import status_by_exit_code  # noqa: PLC0415

    wanted = set(names)
    found: list[Mutant] = []
    for path in MUTATED:
        meta = json.loads((WORK / "mutants" / f"{path}.meta").read_text())
        for name, code in meta["exit_code_by_key"].items():
            if name in wanted:
                found.append(Mutant(name, path, status_by_exit_code[code]))
    missing = wanted - {m.name for m in found}
    if missing:
        raise SystemExit(
            f"mutmut reported nothing for {len(missing)} mutants: {sorted(missing)[:5]}"
        )
    return sorted(found, key=lambda m: m.name)


# -- describing a mutant -------------------------------------------------------------------


def functions_by_name(tree: ast.AST) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def qualified_name(mangled: str) -> list[str]:
    """mutmut's mangled name of a function (x_f, xǁClassǁmethod) as [Class, method] or [f]."""
    if mangled.startswith("xǁ"):
        return mangled[2:].split("ǁ")
    return [mangled.removeprefix("x_")]


def definition_lines(source: str) -> dict[str, int]:
    """The line of each function and method of a module, by qualified name (Class.method)."""
    found: dict[str, int] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found[prefix + node.name] = node.lineno
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(source).body, "")
    return found


@dataclass(frozen=True, slots=True)
class _Parsed:
    lines: list[str]  # mutmut's mutated file
    functions: dict[str, ast.FunctionDef]  # its functions, the mutants among them
    original: dict[str, int]  # the line of each function in the original file


class Describer:
    """Reads mutmut's mutated files once each and describes mutants from them."""

    def __init__(self) -> None:
        self._files: dict[str, _Parsed] = {}

    def _file(self, path: str) -> _Parsed:
        if path not in self._files:
            mutated = (WORK / "mutants" / path).read_text()
            self._files[path] = _Parsed(
                mutated.splitlines(),
                functions_by_name(ast.parse(mutated)),
                definition_lines((WORK / path).read_text()),
            )
        return self._files[path]

    def describe(self, mutant: Mutant) -> Described:
        parsed = self._file(mutant.path)
        local = mutant.name.removeprefix(module_of(mutant.path) + ".")
        mangled = local.rsplit("__mutmut_", 1)[0]
        label = ".".join(qualified_name(mangled))
        before = self._segment(parsed, f"{mangled}__mutmut_orig", label)
        after = self._segment(parsed, local, label)
        changed: list[str] = []
        first_line: int | None = None
        for line in difflib.unified_diff(before, after, n=0, lineterm=""):
            if line.startswith("@@") and first_line is None:
                first_line = int(line.split()[1].lstrip("-").split(",")[0])
            elif line[:1] in "+-" and not line.startswith(("+++", "---")):
                changed.append(f"{line[0]} {line[1:].strip()}")
        at = parsed.original[label] + max((first_line or 1) - 1, 0)
        digest = hashlib.sha256(
            "\n".join([mutant.path, label, *before, "=>", *after]).encode()
        ).hexdigest()
        return Described(f"{mutant.path}:{at} {label}", tuple(changed), digest[:12])

    @staticmethod
    def _segment(parsed: _Parsed, name: str, label: str) -> list[str]:
        """A function's lines (from its `def`), named `label`, trailing blanks dropped."""
        node = parsed.functions[name]
        assert node.end_lineno is not None
        lines = [line.rstrip() for line in parsed.lines[node.lineno - 1 : node.end_lineno]]
        lines[0] = re.sub(r"def \S+?\(", f"def {label}(", lines[0], count=1)
        return lines


# -- equivalent mutants --------------------------------------------------------------------


def read_equivalents(path: Path = EQUIVALENT_FILE) -> dict[str, Equivalent]:
    found: dict[str, Equivalent] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, reason = line.partition(" -- ")
        fingerprint, _, where = head.partition(" ")
        if not sep or not reason.strip() or not FINGERPRINT.match(fingerprint):
            raise SystemExit(f"{path}:{number}: expected `<fingerprint> <where> -- <reason>`")
        if fingerprint in found:
            raise SystemExit(f"{path}:{number}: {fingerprint} is listed twice")
        found[fingerprint] = Equivalent(fingerprint, where.strip(), reason.strip())
    return found


# -- the report ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    score: float
    detected: int
    counted: int


def report(
    mutants: list[Mutant], equivalents: dict[str, Equivalent], describer: Describer, full: bool
) -> Outcome:
    by_status = Counter(m.status for m in mutants)
    unknown = set(by_status) - DETECTED - UNDETECTED
    if unknown:
        raise SystemExit(f"mutants left unchecked or in an unknown state: {dict(by_status)}")
    survivors: list[tuple[Mutant, Described]] = []
    excluded: list[tuple[Mutant, Described, Equivalent]] = []
    wrongly_equivalent: list[tuple[Mutant, Described]] = []
    seen: set[str] = set()
    for mutant in mutants:
        if mutant.status in DETECTED and not equivalents:
            continue
        described = describer.describe(mutant)
        seen.add(described.fingerprint)
        equivalent = equivalents.get(described.fingerprint)
        if mutant.status in DETECTED:
            if equivalent is not None:
                wrongly_equivalent.append((mutant, described))
        elif equivalent is not None:
            excluded.append((mutant, described, equivalent))
        else:
            survivors.append((mutant, described))

    counted = len(mutants) - len(excluded)
    detected = sum(1 for m in mutants if m.status in DETECTED)
    score = 100.0 * detected / counted if counted else 100.0

    print("\nper file (detected / counted):")
    excluded_names = {m.name for m, _, _ in excluded}
    for path in MUTATED:
        mine = [m for m in mutants if m.path == path and m.name not in excluded_names]
        hits = sum(1 for m in mine if m.status in DETECTED)
        share = 100.0 * hits / len(mine) if mine else 100.0
        print(f"  {path:36} {hits:5} / {len(mine):5}  {share:5.1f}%")
    print("statuses: " + ", ".join(f"{s} {n}" for s, n in sorted(by_status.items())))

    if survivors:
        print(f"\nsurviving mutants ({len(survivors)}):")
        for mutant, described in sorted(survivors, key=lambda s: s[1].where):
            note = "" if mutant.status == "survived" else f"  [{mutant.status}]"
            print(f"  {described.fingerprint} {described.where}{note}   ({mutant.name})")
            for line in described.diff:
                print(f"      {line}")
    if excluded:
        print(f"\nequivalent, reviewed in {EQUIVALENT_FILE.name} ({len(excluded)}):")
        for _, described, equivalent in sorted(excluded, key=lambda e: e[1].where):
            print(f"  {described.fingerprint} {described.where} -- {equivalent.reason}")
    if wrongly_equivalent:
        print(f"\nlisted as equivalent but killed: remove them from {EQUIVALENT_FILE.name}:")
        for _, described in wrongly_equivalent:
            print(f"  {described.fingerprint} {described.where}")
    stale = sorted(set(equivalents) - seen)
    if stale and full:
        print(f"\nstale entries of {EQUIVALENT_FILE.name} (no such mutant now; review them):")
        for fingerprint in stale:
            print(f"  {fingerprint} {equivalents[fingerprint].where}")
    return Outcome(score, detected, counted)


# -- main ----------------------------------------------------------------------------------


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sample", type=int, default=env_int("MUTATION_SAMPLE", 0))
    parser.add_argument("--seed", type=int, default=env_int("MUTATION_SEED", -1))
    parser.add_argument("--threshold", type=float, default=env_float("MUTATION_THRESHOLD", 95))
    parser.add_argument("--jobs", type=int, default=env_int("MUTATION_JOBS", os.cpu_count() or 1))
    parser.add_argument("--max-minutes", type=float, default=env_float("MUTATION_MAX_MINUTES", 60))
    parser.add_argument("--list-mutants", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 90 <= args.threshold <= 100:
        parser.error("the threshold is a percentage of at least 90 (issue 19)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_mutants:
        list_mutants()
        return 0
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    equivalents = read_equivalents()
    prepare_work_tree()
    names = all_mutant_names()
    full = not 0 < args.sample < len(names)
    print(f"mutation testing with mutmut: {len(names)} mutants in {', '.join(MUTATED)}")
    print(f"tests: {' '.join(TESTS)}")
    if full:
        chosen = names
        print(f"running all {len(names)} mutants")
    else:
        seed = args.seed if args.seed >= 0 else random.SystemRandom().randrange(2**32)
        chosen = sorted(random.Random(seed).sample(names, args.sample))
        print(f"running a sample of {args.sample} of {len(names)} mutants, seed {seed}")
        print(f"  (again: make mutation MUTATION_SAMPLE={args.sample} MUTATION_SEED={seed})")
    log = WORK / "mutmut.log"
    print(f"work tree ready in {time.monotonic() - started:.0f}s; mutmut runs {args.jobs} at once")
    ran = time.monotonic()
    run_mutmut(None if full else chosen, args.jobs, deadline, log)
    print(f"mutmut done in {time.monotonic() - ran:.0f}s")
    outcome = report(results(chosen), equivalents, Describer(), full)
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    verdict = "passes" if outcome.score >= args.threshold else "FAILS"
    print(
        f"\nmutation score {outcome.score:.1f}%: {outcome.detected} of {outcome.counted} mutants "
        f"that change behaviour were killed; {verdict} the {args.threshold:g}% threshold "
        f"({minutes}m{seconds:02d}s; mutmut's log: {log.relative_to(ROOT)})"
    )
    return 0 if outcome.score >= args.threshold else 1


if __name__ == "__main__":
    sys.exit(main())
