"""Generate manifests/<kind>.schema.json for every kind from its pydantic model.

The committed schemas are for editors and external tooling; the models stay the source of
truth. Output is deterministic so `--check` (run by tests and CI) can say when a committed
file is stale.

    python -m controller.resources.schema            # rewrite every committed schema
    python -m controller.resources.schema --check    # exit 1 if any is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from controller.resources.kind import Kind

SCHEMA_BASE = "https://lab.neuroglia.io/schemas/v1/"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


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


def schema_file(kind: Kind[Any]) -> str:
    return kind.schema_file or f"{kind.singular}.schema.json"


def generate_schema(kind: Kind[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = kind.model.model_json_schema(by_alias=True, mode="validation")
    _drop_property_titles(schema)
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = SCHEMA_BASE + schema_file(kind)
    schema["title"] = kind.kind
    return schema


def render_schema(kind: Kind[Any]) -> str:
    return json.dumps(generate_schema(kind), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_or_check(kinds: Iterable[Kind[Any]], directory: Path, *, check: bool) -> int:
    """Write each kind's schema into `directory`, or (check) return 1 if one is stale."""
    stale = 0
    for kind in kinds:
        path = directory / schema_file(kind)
        expected = render_schema(kind)
        if check:
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != expected:
                problem = "is missing" if current is None else "is stale"
                print(
                    f"{path} {problem}: it no longer matches the {kind.kind} model. Regenerate "
                    "it with `python -m controller.resources.schema` and commit the result.",
                    file=sys.stderr,
                )
                stale = 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected, encoding="utf-8")
        print(f"wrote {path}")
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m controller.resources.schema",
        description="Write (or check) each kind's JSON Schema generated from its model.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if a file in DIR differs from the generated schema",
    )
    parser.add_argument("directory", nargs="?", type=Path, default=MANIFESTS)
    args = parser.parse_args(argv)
    # The kinds are the composition root's; imported here, at run time, because they sit
    # above this package (they are built from it).
    from controller.app import kind_registry

    return write_or_check(kind_registry(), args.directory, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
