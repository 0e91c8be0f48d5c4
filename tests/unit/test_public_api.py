"""The sample is built on the public API alone: `from saga_worker import <a name in __all__>`.

Every .py file under participants/, schemas/ and examples/ is read with `ast`
(nothing is imported); a submodule import (`import saga_worker.x`,
`from saga_worker.x import y`, `import_module("saga_worker.x")`), a name not in
`saga_worker.__all__`, or an attribute of the package outside `__all__`
(`saga_worker.x` after `import saga_worker`) is reported with its file and line.
"""

from __future__ import annotations

import ast
import importlib
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import saga_worker

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "saga_worker"
SAMPLE_ROOTS = tuple(ROOT / name for name in ("participants", "schemas", "examples"))
IMPORT_FUNCTIONS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True, slots=True)
class Violation:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def python_files(roots: Iterable[Path]) -> Iterator[Path]:
    """Every .py file under the roots that exist (examples/ may not, yet)."""
    for root in roots:
        if root.is_file() and root.suffix == ".py":
            yield root
        elif root.is_dir():
            yield from sorted(p for p in root.rglob("*.py") if ".venv" not in p.parts)


def private_uses(tree: ast.AST, public: Collection[str]) -> Iterator[tuple[int, str]]:
    """(line, what) for each reach past the public API in one module's tree."""
    aliases: set[str] = set()  # names bound to the package itself by `import saga_worker`
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    yield node.lineno, f"import {alias.name}: a submodule, not the public API"
                elif alias.name == PACKAGE:
                    aliases.add(alias.asname or PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if node.module.startswith(PACKAGE + "."):
                names = ", ".join(a.name for a in node.names)
                yield node.lineno, f"from {node.module} import {names}: a submodule"
            elif node.module == PACKAGE:
                for alias in node.names:
                    if alias.name != "*" and alias.name not in public:
                        yield (
                            node.lineno,
                            f"from {PACKAGE} import {alias.name}: not in {PACKAGE}.__all__",
                        )
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else None
            if isinstance(function, ast.Name):
                called = function.id
            first = node.args[0]
            if (
                called in IMPORT_FUNCTIONS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.value.startswith(PACKAGE + ".")
            ):
                yield node.lineno, f"{called}({first.value!r}): a submodule"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr not in public
        ):
            yield node.lineno, f"{node.value.id}.{node.attr}: not in {PACKAGE}.__all__"


def private_imports(roots: Iterable[Path], public: Collection[str]) -> list[Violation]:
    """Every reach past the public API in the .py files under `roots`, in file and line order."""
    found: list[Violation] = []
    for path in python_files(roots):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        uses = sorted(set(private_uses(tree, public)))
        found += [Violation(path, line, what) for line, what in uses]
    return found


# -- the sample ----------------------------------------------------------------------------


def test_the_sample_imports_only_names_in_saga_worker_all() -> None:
    violations = private_imports(SAMPLE_ROOTS, saga_worker.__all__)
    report = "\n".join(str(v).removeprefix(f"{ROOT}/") for v in violations)
    assert not violations, f"the sample reaches past saga_worker.__all__:\n{report}"


def test_the_scan_sees_the_sample() -> None:
    scanned = {p.relative_to(ROOT).parts[0] for p in python_files(SAMPLE_ROOTS)}
    assert {"participants", "schemas"} <= scanned


# -- the public API itself ---------------------------------------------------------------------


def test_saga_worker_all_has_no_duplicates() -> None:
    twice = [name for name, count in Counter(saga_worker.__all__).items() if count > 1]
    assert not twice


@pytest.mark.parametrize("name", saga_worker.__all__)
def test_every_name_in_saga_worker_all_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from saga_worker import {name}", namespace)
    assert namespace[name] is getattr(importlib.import_module(PACKAGE), name)


def test_a_star_import_gives_exactly_saga_worker_all() -> None:
    namespace: dict[str, object] = {}
    exec("from saga_worker import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(saga_worker.__all__)


# -- the scan can fail ----------------------------------------------------------------------------

PUBLIC = ("App", "Step")


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import saga_worker.engine.decide\n", "import saga_worker.engine.decide: a submodule"),
        ("import saga_worker.wire.codec as c\n", "import saga_worker.wire.codec: a submodule"),
        ("from saga_worker.app import App\n", "from saga_worker.app import App: a submodule"),
        ("from saga_worker.wire import topics\n", "from saga_worker.wire import topics"),
        ("from saga_worker import App, decide\n", "from saga_worker import decide: not in"),
        ("from saga_worker import wire\n", "from saga_worker import wire: not in"),
        ("import saga_worker as sw\nsw.engine.decide\n", "sw.engine: not in"),
        ("import saga_worker\nsaga_worker.definition\n", "saga_worker.definition: not in"),
        (
            "import importlib\nimportlib.import_module('saga_worker.runtime.store')\n",
            "import_module('saga_worker.runtime.store'): a submodule",
        ),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from saga_worker.engine.state import SagaState\n",
            "from saga_worker.engine.state import SagaState: a submodule",
        ),
    ],
)
def test_a_reach_past_the_public_api_is_reported_with_file_and_line(
    tmp_path: Path, source: str, what: str
) -> None:
    package = tmp_path / "sample" / "nested"
    package.mkdir(parents=True)
    bad = package / "bad.py"
    bad.write_text("'''A module.'''\n\n" + source)
    (package / "good.py").write_text("from saga_worker import App, Step\n")

    violations = private_imports([tmp_path / "sample", tmp_path / "absent"], PUBLIC)

    assert len(violations) == 1, violations
    (violation,) = violations
    assert violation.path == bad
    assert violation.line == source.count("\n") + 2
    assert what in violation.what
    assert str(violation).startswith(f"{bad}:{violation.line}: ")


@pytest.mark.parametrize(
    "source",
    [
        "from saga_worker import App, Step\n",
        "from saga_worker import *\n",
        "import saga_worker\nsaga_worker.App\n",
        "import saga_worker_extras.engine\nfrom saga_workerx import y\n",
        "from . import saga_worker\nfrom .saga_worker import engine\n",
        "import schemas.messages\nfrom participants.keys import INVENTORY\n",
    ],
)
def test_public_imports_and_other_packages_pass(tmp_path: Path, source: str) -> None:
    (tmp_path / "fine.py").write_text(source)
    assert private_imports([tmp_path], PUBLIC) == []


def test_every_violation_in_a_file_is_reported_in_line_order(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text("from saga_worker.app import App\n")
    (tmp_path / "a.py").write_text(
        "import saga_worker.engine.decide\n\nfrom saga_worker import decide\n"
    )

    found = [(v.path.name, v.line) for v in private_imports([tmp_path], PUBLIC)]

    assert found == [("a.py", 1), ("a.py", 3), ("b.py", 1)]
