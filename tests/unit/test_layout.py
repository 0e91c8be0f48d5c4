"""The pure engine stays pure: its modules import the standard library's non-I/O
modules, each other and the error tree, and nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "saga_worker" / "engine"
ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "enum",
    "hashlib",
    "heapq",
    "keyword",
    "math",
    "re",
    "typing",
    "saga_worker.engine",
    "saga_worker.errors",
}


def imported_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
    return found


def outside(modules: set[str]) -> set[str]:
    return {m for m in modules if not any(m == a or m.startswith(a + ".") for a in ALLOWED)}


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_an_engine_module_imports_no_io(path: Path) -> None:
    assert outside(imported_modules(path.read_text())) == set()


@pytest.mark.parametrize(
    "source",
    ["import asyncio\n", "from redis.asyncio import Redis\n", "import saga_worker.runtime\n"],
)
def test_the_check_catches_an_io_import(source: str) -> None:
    assert outside(imported_modules(source))
