"""Writes the JSON Schema of every message body, for producers outside Python.

Run `python -m schemas.export [folder]` (or `make schemas`) after changing a model;
a unit test fails while the committed files in `schemas/json/` are stale.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from saga_worker import DeadLetterRecord
from schemas.messages import MESSAGE_TYPES

DEFAULT_FOLDER = Path(__file__).parent / "json"
SUFFIX = ".schema.json"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, one per topic body, plus the dead-letter record."""
    models: dict[str, type[BaseModel]] = {**MESSAGE_TYPES, "DeadLetterRecord": DeadLetterRecord}
    return {
        f"{name}{SUFFIX}": {"$schema": _DIALECT, **model.model_json_schema()}
        for name, model in models.items()
    }


def write_json_schemas(folder: Path) -> list[Path]:
    """Write every schema into `folder`, removing schema files no model produces any more."""
    folder.mkdir(parents=True, exist_ok=True)
    schemas = json_schemas()
    for stale in folder.glob(f"*{SUFFIX}"):
        if stale.name not in schemas:
            stale.unlink()
    written = []
    for name, schema in sorted(schemas.items()):
        path = folder / name
        path.write_bytes(
            orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else DEFAULT_FOLDER
    for path in write_json_schemas(folder):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
