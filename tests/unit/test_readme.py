"""The README's code excerpts are the code in the repository, word for word."""

from __future__ import annotations

import pytest

from tests.readme import ROOT, Block, marked_blocks

EXCERPTS = [b for b in marked_blocks() if b.kind == "from"]


def test_the_readme_marks_its_examples() -> None:
    assert len(EXCERPTS) >= 8
    assert [b.name for b in marked_blocks() if b.kind == "run"] == [
        "your-own-saga",
        "approval",
        "console",
    ]


@pytest.mark.parametrize("block", EXCERPTS, ids=lambda b: f"{b.name}:{b.text.splitlines()[0]}")
def test_a_readme_excerpt_is_in_its_file(block: Block) -> None:
    source = (ROOT / block.name).read_text()
    assert block.text in source, f"README excerpt of {block.name} is not in that file"


def test_a_changed_excerpt_is_caught() -> None:
    text = "<!-- from README.md -->\n```python\nnot a line of the README at all\n```\n"
    (block,) = marked_blocks(text)
    assert block.text not in (ROOT / block.name).read_text()
