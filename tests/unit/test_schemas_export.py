"""The committed JSON Schemas match the models."""

from __future__ import annotations

from pathlib import Path

from schemas import MESSAGE_TYPES
from schemas.export import DEFAULT_FOLDER, SUFFIX, main, write_json_schemas


def test_committed_json_schemas_are_current(tmp_path: Path) -> None:
    fresh = {path.name: path.read_text() for path in write_json_schemas(tmp_path)}
    committed = {path.name: path.read_text() for path in DEFAULT_FOLDER.glob(f"*{SUFFIX}")}
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"schemas/json is stale ({', '.join(stale)}): run `python -m schemas.export`"


def test_one_schema_per_topic_plus_the_dead_letter_record(tmp_path: Path) -> None:
    names = {path.name for path in write_json_schemas(tmp_path)}
    assert names == {f"{topic}{SUFFIX}" for topic in MESSAGE_TYPES} | {f"DeadLetterRecord{SUFFIX}"}


def test_export_removes_schemas_no_model_produces(tmp_path: Path) -> None:
    (tmp_path / f"Retired{SUFFIX}").write_text("{}\n")
    (tmp_path / "README.md").write_text("kept\n")
    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / f"Retired{SUFFIX}").exists()
    assert (tmp_path / "README.md").exists()
