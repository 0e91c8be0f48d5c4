"""The README's marked code blocks, so tests can check and run what it shows.

<!-- from PATH -->      the fenced block after it is an excerpt of the file PATH
<!-- run: NAME -->      the fenced block after it is commands a test runs
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

_MARKED = re.compile(r"<!-- (from|run):? (\S+) -->\n```\w*\n(.*?)\n```", re.DOTALL)


@dataclass(frozen=True)
class Block:
    kind: str  # "from" or "run"
    name: str  # a file path, or the name of a run block
    text: str


def marked_blocks(text: str | None = None) -> list[Block]:
    source = README.read_text() if text is None else text
    return [Block(m[1], m[2], m[3]) for m in _MARKED.finditer(source)]


def run_block(name: str) -> list[list[str]]:
    """The commands of the run block `name`, each split into its words as a shell would."""
    found = [b for b in marked_blocks() if b.kind == "run" and b.name == name]
    if len(found) != 1:
        raise LookupError(f"README has {len(found)} run blocks named {name!r}")
    return [shlex.split(line) for line in found[0].text.splitlines() if line.strip()]
