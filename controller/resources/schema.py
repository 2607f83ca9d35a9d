"""Generate manifests/labworker.schema.json from the pydantic model.

The committed schema is for editors and external tooling; the model stays the source of
truth. Output is deterministic so `--check` (run by tests and CI) can say when the
committed file is stale.

    python -m controller.resources.schema            # rewrite the committed schema
    python -m controller.resources.schema --check    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.resources.labworker import LabWorker

SCHEMA_ID = "https://lab.neuroglia.io/schemas/v1/labworker.schema.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_SCHEMA_PATH = Path(__file__).resolve().parents[2] / "manifests" / "labworker.schema.json"


def _drop_property_titles(node: Any) -> None:
    """pydantic titles each field after its Python name ("Volumesizegb"): pure noise."""
    if isinstance(node, dict):
        for property_schema in node.get("properties", {}).values():
            property_schema.pop("title", None)
        for child in node.values():
            _drop_property_titles(child)
    elif isinstance(node, list):
        for child in node:
            _drop_property_titles(child)


def generate_schema() -> dict[str, Any]:
    schema = LabWorker.model_json_schema(by_alias=True, mode="validation")
    _drop_property_titles(schema)
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["title"] = "LabWorker"
    return schema


def render_schema() -> str:
    return json.dumps(generate_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m controller.resources.schema",
        description="Write (or check) the LabWorker JSON Schema generated from the model.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if PATH differs from the generated schema",
    )
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_SCHEMA_PATH)
    args = parser.parse_args(argv)
    path: Path = args.path
    expected = render_schema()

    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == expected:
            return 0
        problem = "is missing" if current is None else "is stale"
        print(
            f"{path} {problem}: it no longer matches the LabWorker model. "
            "Regenerate it with `python -m controller.resources.schema` and commit the result.",
            file=sys.stderr,
        )
        return 1

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(expected, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
