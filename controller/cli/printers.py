"""What `labctl get` and `labctl describe` print, for any kind, as kubectl prints it.

Pure functions of objects and a `now`: the output formats of `-o` (table, wide, name, json,
yaml, jsonpath, custom-columns), the tables (NAME, the kind's printer columns, AGE in
kubectl's format), the generic describe (metadata, then every other field as indented
`key: value`, conditions as a table) and the Events table every describe ends with. A kind
needs no code here to be printed; LabWorker keeps its hand-laid describe (DESCRIBERS).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import yaml

from controller.cli import jsonpath
from controller.cli.errors import UsageError
from controller.cli.targets import qualified
from controller.resources import Kind, Resource
from controller.resources.age import age
from controller.resources.names import shorten

LABEL_WIDTH = 20
"""Values of describe's top-level fields start at this column (`Deletion Requested: `)."""


# -- output formats --------------------------------------------------------------------------

OUTPUTS = "name, json, yaml, wide, jsonpath=TEMPLATE, custom-columns=HEADER:PATH,..."


@dataclass(frozen=True)
class Output:
    """A parsed `-o`: table (None), wide, name, json, yaml, jsonpath or custom-columns."""

    format: str | None = None
    template: tuple[Any, ...] = ()
    columns: tuple[tuple[str, jsonpath.Path], ...] = ()

    @property
    def tabular(self) -> bool:
        return self.format in (None, "wide", "custom-columns")


def parse_output(text: str | None) -> Output:
    """`-o`'s value; raises UsageError naming the formats for anything else."""
    if text is None or text == "":
        return Output()
    if text in ("wide", "name", "json", "yaml"):
        return Output(text)
    kind, sep, rest = text.partition("=")
    if sep and kind == "jsonpath" and rest:
        return Output("jsonpath", template=jsonpath.compile_template(rest))
    if sep and kind == "custom-columns" and rest:
        columns = []
        for spec in rest.split(","):
            header, colon, path = spec.partition(":")
            if not colon or not header or not path:
                raise UsageError(
                    f"-o custom-columns: {shorten(spec)} is not HEADER:PATH "
                    "(e.g. NAME:.metadata.name,PHASE:.status.phase)"
                )
            columns.append((header, jsonpath.compile_path(path)))
        return Output("custom-columns", columns=tuple(columns))
    raise UsageError(f"{shorten(text)} is not an output format (one of {OUTPUTS})")


def sort_objects(objects: Sequence[Resource], expression: str | None) -> list[Resource]:
    """`--sort-by=.metadata.name` (a JSONPath): numbers by value, the rest as text, objects
    without the field first (as kubectl)."""
    if not expression:
        return list(objects)
    path = jsonpath.compile_path(expression)

    def key(obj: Resource) -> tuple[int, float, str]:
        values = path.values(obj.to_dict())
        if not values:
            return (0, 0.0, "")
        value = values[0]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (1, float(value), "")
        return (2, 0.0, jsonpath.text_of(value))

    return sorted(objects, key=key)


# -- tables ----------------------------------------------------------------------------------


def format_rows(rows: Sequence[Sequence[str]], gap: str = "   ") -> list[str]:
    """Left-aligned columns (kubectl's tabwriter, 3 spaces of padding)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [gap.join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


@dataclass(frozen=True)
class Table:
    """How `labctl get` lays out one kind: which columns, and for whom."""

    kind: Kind[Any]
    output: Output = Output()
    namespaces: bool = False
    qualify: bool = False
    show_labels: bool = False

    def header(self) -> list[str]:
        if self.output.format == "custom-columns":
            return [header for header, _ in self.output.columns]
        narrow = [c for c in self.kind.columns if not c.wide]
        extra = [c for c in self.kind.columns if c.wide] if self.output.format == "wide" else []
        header = ["NAME", *(c.name for c in narrow), "AGE", *(c.name for c in extra)]
        if self.namespaces:
            header.insert(0, "NAMESPACE")
        if self.show_labels:
            header.append("LABELS")
        return header

    def row(self, obj: Resource, now: datetime) -> list[str]:
        if self.output.format == "custom-columns":
            doc = obj.to_dict()
            return [
                ",".join(jsonpath.text_of(v) for v in path.values(doc)) or "<none>"
                for _, path in self.output.columns
            ]
        kind = self.kind
        narrow = [c for c in kind.columns if not c.wide]
        extra = [c for c in kind.columns if c.wide] if self.output.format == "wide" else []
        name = f"{qualified(kind)}/{obj.metadata.name}" if self.qualify else obj.metadata.name
        row = [
            name,
            *(_cell(c.value, obj) for c in narrow),
            age(obj.metadata.creation_timestamp, now),
            *(_cell(c.value, obj) for c in extra),
        ]
        if self.namespaces:
            row.insert(0, obj.metadata.namespace)
        if self.show_labels:
            labels = obj.metadata.labels
            row.append(",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>")
        return row


def table_rows(
    kind: Kind[Any],
    objects: Sequence[Resource],
    now: datetime,
    *,
    wide: bool = False,
    namespaces: bool = False,
    qualify: bool = False,
) -> list[list[str]]:
    """NAME, the kind's columns, AGE, then its wide columns (`-o wide`); NAMESPACE first
    with `-A`; names as `kind.group/name` when several kinds share one output."""
    table = Table(kind, Output("wide" if wide else None), namespaces, qualify)
    return [table.header(), *(table.row(obj, now) for obj in objects)]


def _cell(value: Callable[[Any], str], obj: Resource) -> str:
    text = str(value(obj))
    return " ".join(text.split()) or "<none>"  # a newline in a value would break the table


def document(objects: Sequence[Resource], single: bool) -> Any:
    """One object, or kubectl's `List` of them: what json, yaml and jsonpath print."""
    docs = [obj.to_dict() for obj in objects]
    return docs[0] if single and docs else {"apiVersion": "v1", "kind": "List", "items": docs}


def print_objects(
    groups: Sequence[tuple[Kind[Any], Sequence[Resource]]],
    output: Output | str | None,
    *,
    single: bool,
    namespaces: bool,
    now: datetime,
    out: TextIO,
    no_headers: bool = False,
    show_labels: bool = False,
) -> bool:
    """`labctl get`'s output; False when there was nothing to print (the caller says so)."""
    fmt = output if isinstance(output, Output) else parse_output(output)
    objects = [obj for _, objs in groups for obj in objs]
    if fmt.format in ("json", "yaml"):
        payload = document(objects, single)
        if fmt.format == "json":
            out.write(json.dumps(payload, indent=2) + "\n")
        else:
            out.write(yaml.safe_dump(payload, sort_keys=False))
        return True
    if fmt.format == "jsonpath":
        out.write(jsonpath.render(fmt.template, document(objects, single)))
        return True
    if fmt.format == "name":
        for kind, objs in groups:
            for obj in objs:
                out.write(f"{qualified(kind)}/{obj.metadata.name}\n")
        return bool(objects)
    first = True
    for kind, objs in groups:
        if not objs:
            continue
        if not first:
            out.write("\n")
        first = False
        table = Table(kind, fmt, namespaces, len(groups) > 1, show_labels)
        rows = [table.header(), *(table.row(obj, now) for obj in objs)]
        lines = format_rows(rows)
        out.write("\n".join(lines[1:] if no_headers else lines) + "\n")
    return bool(objects)


# -- describe --------------------------------------------------------------------------------


def field(label: str, value: object) -> str:
    return f"{label + ':':<{LABEL_WIDTH - 1}} {value}"


def _pairs(mapping: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(mapping.items())) or "<none>"


def describe_metadata(obj: Resource, now: datetime) -> list[str]:
    m = obj.metadata
    lines = [
        field("Name", m.name),
        field("Namespace", m.namespace),
        field("UID", m.uid or "<none>"),
        field("Labels", _pairs(m.labels)),
        field("Annotations", _pairs(m.annotations)),
        field("Created", f"{m.creation_timestamp} ({age(m.creation_timestamp, now)} ago)"),
        field("Generation", m.generation),
        field("Resource Version", m.resource_version or "<none>"),
        field("Finalizers", ", ".join(m.finalizers) or "<none>"),
    ]
    owner = m.controller_ref()
    if owner is not None:
        lines.append(field("Controlled By", f"{owner.kind}/{owner.name}"))
    others = [ref for ref in m.owner_references or () if not ref.controller]
    if others:
        lines.append(field("Owners", ", ".join(f"{r.kind}/{r.name}" for r in others)))
    if m.deletion_timestamp:
        lines.append(field("Deletion Requested", m.deletion_timestamp))
    return lines


def describe_generic(kind: Kind[Any], obj: Resource, now: datetime) -> list[str]:
    """Metadata, then each remaining top-level field (`Spec:`, `Status:`, an Event's
    `Reason:` …) with nested values as indented `key: value`; status conditions as a table."""
    lines = describe_metadata(obj, now)
    lines.insert(2, field("Kind", f"{kind.kind} ({kind.api_version})"))
    doc = obj.to_dict()
    status_key = _alias(obj, obj.status_field) if obj.status_field else None
    for key, value in doc.items():
        if key in ("apiVersion", "kind", "metadata", status_key):
            continue
        lines += _top_level(key, value)
    if status_key is not None:
        status = doc.get(status_key)
        status = dict(status) if isinstance(status, dict) else {}
        conditions = status.pop("conditions", None)
        lines.append("Status:" if status or conditions is not None else field("Status", "<none>"))
        lines += _mapping_lines(status, 2)
        if conditions is not None:
            lines.append("  Conditions:")
            lines += condition_lines(conditions, 4)
    return lines


def _alias(obj: Resource, name: str) -> str:
    info = type(obj).model_fields.get(name)
    return (info.alias if info is not None and info.alias else None) or name


def _title(key: str) -> str:
    """`involvedObject` → `Involved Object`, as kubectl labels a resource's fields."""
    words, current = [], ""
    for ch in key:
        if ch.isupper() and current and not current[-1].isupper():
            words.append(current)
            current = ch
        else:
            current += ch
    words.append(current)
    return " ".join(w[:1].upper() + w[1:] for w in words if w)


def _top_level(key: str, value: Any) -> list[str]:
    label = _title(key)
    if isinstance(value, dict) and value:
        return [f"{label}:", *_mapping_lines(value, 2)]
    if isinstance(value, list) and value and not all(_is_scalar(v) for v in value):
        return [f"{label}:", *_list_lines(value, 2)]
    return [field(label, _scalar(value))]


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list) or not value


def _scalar(value: Any) -> str:
    if isinstance(value, dict | list) and not value:
        return "<none>"
    if isinstance(value, list):
        return ", ".join(_scalar(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<none>"
    return " ".join(str(value).split()) if "\n" in str(value) else str(value)


def _mapping_lines(mapping: Mapping[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    width = max((len(k) for k, v in mapping.items() if _is_scalar(v)), default=0) + 2
    lines: list[str] = []
    for key, value in mapping.items():
        if _is_scalar(value) or (isinstance(value, list) and all(_is_scalar(v) for v in value)):
            lines.append(f"{pad}{key + ':':<{width}}{_scalar(value)}".rstrip())
        elif isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines += _mapping_lines(value, indent + 2)
        else:
            lines.append(f"{pad}{key}:")
            lines += _list_lines(value, indent + 2)
    return lines


def _list_lines(items: Sequence[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for item in items:
        if isinstance(item, dict) and item:
            block = _mapping_lines(item, indent + 2)
            lines.append(f"{pad}- {block[0].lstrip()}")
            lines += block[1:]
        elif isinstance(item, list) and item:
            lines.append(f"{pad}-")
            lines += _list_lines(item, indent + 2)
        else:
            lines.append(f"{pad}- {_scalar(item)}")
    return lines


def condition_lines(conditions: Sequence[Mapping[str, Any]], indent: int) -> list[str]:
    pad = " " * indent
    if not conditions:
        return [f"{pad}<none>"]
    rows = [[f"{pad}TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"]]
    rows += [
        [
            f"{pad}{c.get('type', '')}",
            str(c.get("status", "")),
            str(c.get("reason") or ""),
            str(c.get("lastTransitionTime") or ""),
            _scalar(c.get("message") or ""),
        ]
        for c in conditions
    ]
    return format_rows(rows)


# -- events ----------------------------------------------------------------------------------


def event_lines(events: Sequence[Resource], now: datetime) -> list[str]:
    """kubectl describe's closing section: Type, Reason, Age, From, Message, oldest first;
    Age reads `3m (x5 over 10m)` for an event seen several times."""
    if not events:
        return [field("Events", "<none>")]
    docs = sorted(
        (e.to_dict() for e in events),
        key=lambda d: str(d.get("lastTimestamp") or d.get("firstTimestamp") or ""),
    )
    rows = [
        ["  Type", "Reason", "Age", "From", "Message"],
        ["  ----", "------", "---", "----", "-------"],
    ]
    for d in docs:
        last = (
            d.get("lastTimestamp")
            or d.get("firstTimestamp")
            or d["metadata"].get("creationTimestamp")
        )
        count = d.get("count") or 1
        when = age(last, now)
        if isinstance(count, int) and count > 1:
            when = f"{when} (x{count} over {age(d.get('firstTimestamp') or last, now)})"
        source = str(d.get("reportingController") or "")
        if d.get("reportingInstance"):
            source = (
                f"{source}, {d['reportingInstance']}" if source else str(d["reportingInstance"])
            )
        rows.append(
            [
                f"  {d.get('type') or ''}",
                str(d.get("reason") or ""),
                when,
                source,
                _scalar(str(d.get("message") or "").strip()),
            ]
        )
    return ["Events:", *format_rows(rows, gap="  ")]


Describer = Callable[[Kind[Any], Any, datetime], list[str]]
"""A kind's own describe body (everything above Events), registered in DESCRIBERS."""

DESCRIBERS: dict[str, Describer] = {}
"""By `Kind.kind`; a kind without an entry gets `describe_generic`."""


def describe(kind: Kind[Any], obj: Resource, events: Sequence[Resource], now: datetime) -> str:
    describer: Describer = DESCRIBERS.get(kind.kind, describe_generic)
    body = describer(kind, obj, now)
    return "\n".join([*body, *event_lines(events, now)])
