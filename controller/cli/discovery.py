"""What labctl serves and how to use it: `api-resources`, `explain`, `version`.

`explain` reads the JSON Schema generated from each kind's model
(controller.resources.schema) — the same schema committed under manifests/ — so the
documentation a user reads is the validation labctl applies.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from controller.app import kind_registry
from controller.cli.errors import CliError, UsageError
from controller.cli.printers import format_rows
from controller.cli.targets import lookup
from controller.cli.verb import Subparsers, add_verb
from controller.resources.names import shorten
from controller.resources.schema import generate_schema


def register(sub: Subparsers) -> None:
    add_verb(
        sub,
        "api-resources",
        "list the kinds labctl serves and their names",
        cmd_api_resources,
        etcd=False,
        namespaced=False,
    )
    explain = add_verb(
        sub,
        "explain",
        "document a kind or one of its fields (KIND[.field.field])",
        cmd_explain,
        etcd=False,
        namespaced=False,
    )
    explain.add_argument("field", metavar="KIND[.FIELD]", help="e.g. lw, lw.spec.instance")
    explain.add_argument(
        "--recursive", action="store_true", help="every nested field, indented, no descriptions"
    )
    add_verb(sub, "version", "print labctl's version", cmd_version, etcd=False, namespaced=False)


def cmd_api_resources(args: argparse.Namespace) -> int:
    """The kinds this labctl serves and every name they answer to (kubectl api-resources)."""
    rows = [["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]]
    for kind in sorted(kind_registry(), key=lambda k: k.plural):
        rows.append([kind.plural, ",".join(kind.short_names), kind.api_version, "true", kind.kind])
    print("\n".join(format_rows(rows)))
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from controller.cli.parser import version

    print(f"labctl {version()}")
    return 0


# -- explain ---------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref` into `$defs` and unwrap `X | None` (anyOf with null)."""
    while True:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**root["$defs"][ref.rsplit("/", 1)[1]], **extra}
            continue
        options = schema.get("anyOf")
        if isinstance(options, list):
            real = [o for o in options if o.get("type") != "null"]
            if len(real) == 1:
                extra = {k: v for k, v in schema.items() if k != "anyOf"}
                schema = {**real[0], **extra}
                continue
        return schema


def _type_name(schema: dict[str, Any], root: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[1]
    options = schema.get("anyOf")
    if isinstance(options, list):
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1:
            return _type_name(real[0], root)
        return "|".join(_type_name(o, root) for o in real)
    kind = schema.get("type")
    if kind == "array":
        return f"[]{_type_name(schema.get('items') or {}, root)}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map[string]{_type_name(schema['additionalProperties'], root)}"
    if "enum" in schema:
        return "enum"
    return str(kind or "Object")


def _describe(schema: dict[str, Any]) -> str:
    text = str(schema.get("description") or "")
    if "enum" in schema:
        values = ", ".join(f'"{v}"' for v in schema["enum"])
        text = f"{text}\n\nPossible enum values: {values}".strip()
    return text or "<no description>"


def _indented(text: str, pad: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines += textwrap.wrap(paragraph, 88 - pad) or [""]
    return [" " * pad + line if line else "" for line in lines]


def _field_lines(
    schema: dict[str, Any], root: dict[str, Any], depth: int, recursive: bool
) -> list[str]:
    node = _resolve(schema, root)
    if node.get("type") == "array":
        node = _resolve(node.get("items") or {}, root)
    required = set(node.get("required") or ())
    lines: list[str] = []
    for name, prop in sorted((node.get("properties") or {}).items()):
        mark = " -required-" if name in required else ""
        lines.append(f"{'  ' * depth}{name}\t<{_type_name(prop, root)}>{mark}")
        if recursive:
            lines += _field_lines(prop, root, depth + 1, True)
        else:
            lines += _indented(_describe(_resolve(prop, root)), 2 * depth + 2)
            lines.append("")
    return lines


def cmd_explain(args: argparse.Namespace) -> int:
    type_, _, path = args.field.partition(".")
    if not type_:
        raise UsageError("explain needs a KIND, e.g. `labctl explain lw.spec`")
    kind = lookup(kind_registry(), type_)
    root = generate_schema(kind)
    node: dict[str, Any] = root
    walked: list[str] = []
    for part in path.split(".") if path else []:
        resolved = _resolve(node, root)
        if resolved.get("type") == "array":
            resolved = _resolve(resolved.get("items") or {}, root)
        properties = resolved.get("properties") or {}
        if part not in properties:
            where = ".".join([kind.singular, *walked]) or kind.singular
            known = ", ".join(sorted(properties)) or "none"
            raise CliError(f"field {shorten(part)} does not exist in {where} (its fields: {known})")
        walked.append(part)
        node = properties[part]
    resolved = _resolve(node, root)
    lines = [f"KIND:       {kind.kind}", f"VERSION:    {kind.api_version}", ""]
    if walked:
        lines += [f"FIELD: {walked[-1]} <{_type_name(node, root)}>", ""]
    lines += ["DESCRIPTION:", *_indented(_describe(resolved), 4), ""]
    fields = _field_lines(node, root, 1, args.recursive)
    if fields:
        lines += ["FIELDS:", *fields]
    print("\n".join(lines).rstrip())
    return 0
